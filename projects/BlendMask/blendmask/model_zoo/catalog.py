"""Where the COCO-trained checkpoints of the reference configs live, under which licence, with which
published COCO AP.

Sources, read at the commits named: AdelaiDet ``3672122`` (``configs/BlendMask/README.md``,
``configs/SOLOv2/README.md``, ``configs/FCOS-Detection/README.md``; since Jan. 2024 its files are on
Hugging Face, CloudStor being closed), centermask2 ``6adabd6`` (``README.md``, Dropbox links) and
AggMask ``5aaa6cb`` (``README.md``, Google Drive pages). None of the URLs could be fetched from the
machine this was written on (no internet), so no checksum is known yet: ``sha256`` stays ``None`` and
downloads are not verified until one is filled in (``blendmask.model_zoo.download`` checks it when set).

Published AP is COCO val2017 ("minival") as the authors' tables give it; ``None`` where the table
gives none.
"""

from dataclasses import dataclass, field
from typing import Dict, Optional

ADELAIDET_LICENCE = "AdelaiDet licence: non-commercial use only (commercial licence from the authors)"
CENTERMASK2_LICENCE = "CC BY-NC 4.0 (centermask2's LICENSE, non-commercial)"
AGGMASK_LICENCE = "AggMask repository: Apache-2.0; the weights' own terms are not stated"

ADELAIDET_HF = "https://huggingface.co/ZjuCv/AdelaiDet/resolve/main/"
ADELAIDET_FCOS_HF = "https://huggingface.co/tianzhi/AdelaiDet-FCOS/resolve/main/"
ADELAIDET_PAGE = "https://github.com/aim-uofa/AdelaiDet/blob/master/configs/{}/README.md"
CENTERMASK2_PAGE = "https://github.com/youngwanLEE/centermask2#results-on-coco-val"
AGGMASK_PAGE = "https://github.com/advdfacd/AggMask#pre-trained-models"


@dataclass(frozen=True)
class Entry:
    """One config of the model zoo. ``url`` is a direct download of the reference checkpoint, or None
    with ``note`` saying why there is none."""

    model: str
    backbone: str
    schedule: str
    source: str  # the page whose table lists the checkpoint and AP
    licence: str
    url: Optional[str] = None
    sha256: Optional[str] = None
    box_ap: Optional[float] = None
    mask_ap: Optional[float] = None
    extra: Dict[str, float] = field(default_factory=dict)  # e.g. panoptic PQ
    note: str = ""


def _adelaidet(model, backbone, schedule, file, box, mask, folder="BlendMask", **kw):
    return Entry(model, backbone, schedule, ADELAIDET_PAGE.format(folder), ADELAIDET_LICENCE,
                 url=ADELAIDET_HF + file if file else None, box_ap=box, mask_ap=mask, **kw)


def _centermask2(model, backbone, schedule, dropbox_id, file, box, mask, **kw):
    url = f"https://dl.dropbox.com/s/{dropbox_id}/{file}" if dropbox_id else None
    return Entry(model, backbone, schedule, CENTERMASK2_PAGE, CENTERMASK2_LICENCE, url=url, box_ap=box,
                 mask_ap=mask, **kw)


_PANOPTIC_NOTE = ("no live location known: AdelaiDet's table now links the instance model's file of the same "
                  "name (its CloudStor original, a different file, is gone with CloudStor)")
_CM_RESNET_NOTE = "centermask2 publishes no checkpoint for this config (its table lists none)"
_AGGMASK_NOTE = ("the authors' mmdetection checkpoint is a Google Drive page, not a direct download, and this "
                 "package converts only the head's parameter names (blendmask.modeling.aggmask.convert)")

CATALOG: Dict[str, Entry] = {
    # BlendMask (AdelaiDet configs/BlendMask/README.md)
    "BlendMask/R_50_1x.yaml": _adelaidet("BlendMask", "R-50", "1x", "R_50_1x.pth", 39.9, 35.8),
    "BlendMask/R_50_3x.yaml": _adelaidet("BlendMask", "R-50", "3x", "R_50_3x.pth", 42.7, 37.8),
    "BlendMask/R_101_3x.yaml": _adelaidet("BlendMask", "R-101", "3x", "R_101_3x.pth", 44.8, 39.5),
    "BlendMask/R_101_dcni3_5x.yaml": _adelaidet("BlendMask", "R-101 DCN (interval 3)", "5x",
                                                "R_101_dcni3_5x.pth", 46.8, 41.1),
    "BlendMask/550_R_50_3x.yaml": _adelaidet("BlendMask 550", "R-50", "3x", "550_R_50_3x.pth", 38.7, 34.5),
    "BlendMask/RT_R_50_4x_syncbn_shtw.yaml": _adelaidet("BlendMask RT", "R-50", "4x",
                                                        "RT_R_50_4x_syncbn_shtw.pth", 39.3, 35.1),
    "BlendMask/RT_R_50_4x_bn-head_syncbn_shtw.yaml": _adelaidet("BlendMask RT (BN head)", "R-50", "4x",
                                                                "RT_R_50_4x_bn-head_syncbn_shtw.pth", 39.3, 35.1),
    # Panoptic BlendMask: PQ / PQ-things / PQ-stuff in ``extra``
    "BlendMask/Panoptic/R_50_1x.yaml": _adelaidet(
        "Panoptic BlendMask", "R-50", "1x", None, None, None,
        note="AdelaiDet publishes no checkpoint or result for this config"),
    "BlendMask/Panoptic/R_50_3x.yaml": _adelaidet(
        "Panoptic BlendMask", "R-50", "3x", None, None, None, extra={"PQ": 42.5, "PQ_th": 49.5, "PQ_st": 32.0},
        note=_PANOPTIC_NOTE),
    "BlendMask/Panoptic/R_50_dcni3_5x.yaml": _adelaidet(
        "Panoptic BlendMask", "R-50 DCN (interval 3)", "5x", None, None, None,
        note="AdelaiDet publishes no checkpoint or result for this config"),
    "BlendMask/Panoptic/R_101_3x.yaml": _adelaidet(
        "Panoptic BlendMask", "R-101", "3x", None, None, None, extra={"PQ": 44.3, "PQ_th": 51.6, "PQ_st": 33.2},
        note=_PANOPTIC_NOTE),
    "BlendMask/Panoptic/R_101_dcni3_5x.yaml": _adelaidet(
        "Panoptic BlendMask", "R-101 DCN (interval 3)", "5x", None, None, None,
        extra={"PQ": 46.0, "PQ_th": 52.9, "PQ_st": 35.5}, note=_PANOPTIC_NOTE),
    # FCOS (AdelaiDet configs/FCOS-Detection/README.md)
    "FCOS-Detection/R_50_1x.yaml": Entry(
        "FCOS", "R-50", "1x", ADELAIDET_PAGE.format("FCOS-Detection"), ADELAIDET_LICENCE,
        url=ADELAIDET_FCOS_HF + "FCOS_R_50_1x.pth", box_ap=38.7),
    # SOLOv2 (AdelaiDet configs/SOLOv2/README.md: its wget line still names CloudStor, which has closed)
    "SOLOv2/R50_3x.yaml": _adelaidet("SOLOv2", "R-50", "3x (36 epochs)", "SOLOv2_R50_3x.pth", None, 37.6,
                                     folder="SOLOv2"),
    "SOLOv2/R101_3x.yaml": _adelaidet("SOLOv2", "R-101", "3x (36 epochs)", "SOLOv2_R101_3x.pth", None, 39.0,
                                      folder="SOLOv2"),
    # CenterMask (centermask2 README.md)
    "CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "VoVNetV2-39", "3x", "tczecsdxt10uai5", "centermask2-V-39-eSE-FPN-ms-3x.pth", 44.2, 39.7),
    "CenterMask/centermask_V_57_eSE_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "VoVNetV2-57", "3x", "lw8nxajv1tim8gr", "centermask2-V-57-eSE-FPN-ms-3x.pth", 45.1, 40.5),
    "CenterMask/centermask_V_99_eSE_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "VoVNetV2-99", "3x", "c6n79x83xkdowqc", "centermask2-V-99-eSE-FPN-ms-3x.pth", 46.0, 41.4),
    "CenterMask/centermask_V_39_eSE_dcn_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "VoVNetV2-39 DCN", "3x", "zmps03vghzirk7v", "centermask-V-39-eSE-dcn-FPN-ms-3x.pth", 45.1, 40.3),
    "CenterMask/centermask_V_57_eSE_dcn_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "VoVNetV2-57 DCN", "3x", "1f64azqyd2ot6qq", "centermask-V-57-eSE-dcn-FPN-ms-3x.pth", 45.5, 40.9),
    "CenterMask/centermask_V_99_eSE_dcn_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "VoVNetV2-99 DCN", "3x", "atuph90nzm7s8x8", "centermask-V-99-eSE-dcn-FPN-ms-3x.pth", 46.9, 42.0),
    "CenterMask/centermask_R_50_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "R-50", "3x", None, None, None, None, note=_CM_RESNET_NOTE),
    "CenterMask/centermask_R_101_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "R-101", "3x", None, None, None, None, note=_CM_RESNET_NOTE),
    "CenterMask/centermask_X_101_FPN_ms_3x.yaml": _centermask2(
        "CenterMask", "X-101", "3x", None, None, None, None, note=_CM_RESNET_NOTE),
    "CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml": _centermask2(
        "CenterMask-Lite", "VoVNetV2-19", "4x", "dret2ap7djty7mp", "centermask2-lite-V-19-eSE-FPN-ms-4x.pth",
        35.9, 32.8),
    "CenterMask/centermask_lite_V_39_eSE_FPN_ms_4x.yaml": _centermask2(
        "CenterMask-Lite", "VoVNetV2-39", "4x", "uwc0ypa1jvco2bi", "centermask2-lite-V-39-eSE-FPN-ms-4x.pth",
        40.9, 36.7),
    "CenterMask/centermask_lite_V_19_slim_eSE_FPN_ms_4x.yaml": _centermask2(
        "CenterMask-Lite", "VoVNetV2-19-Slim", "4x", "o2n1ifl0zkbv16x",
        "centermask-lite-V-19-eSE-slim-FPN-ms-4x.pth", 32.5, 29.8),
    "CenterMask/centermask_lite_V_19_slim_dw_eSE_FPN_ms_4x.yaml": _centermask2(
        "CenterMask-Lite", "VoVNetV2-19-Slim-DW", "4x", "vsvhwtqm6ko1c7m",
        "centermask-lite-V-19-eSE-slim-dw-FPN-ms-4x.pth", 29.5, 27.1),
    "CenterMask/centermask_lite_Mv2_FPN_ms_4x.yaml": _centermask2(
        "CenterMask-Lite", "MobileNetV2", "4x", "8omou546f0n78nj", "centermask_lite_Mv2_ms_4x.pth", 29.8, 27.2),
    # AggMask* (the authors' repository, mmdetection)
    "AggMask/AggMaskStar_R50.yaml": Entry("AggMask*", "R-50", "3x (36 epochs)", AGGMASK_PAGE, AGGMASK_LICENCE,
                                          mask_ap=38.7, note=_AGGMASK_NOTE),
    "AggMask/AggMaskStar_R101.yaml": Entry("AggMask*", "R-101", "3x (36 epochs)", AGGMASK_PAGE, AGGMASK_LICENCE,
                                           mask_ap=39.4, note=_AGGMASK_NOTE),
    "AggMask/AggMaskStar_R101_HalfMaskGrid.yaml": Entry(
        "AggMask* -mask-grid", "R-101", "3x (36 epochs)", AGGMASK_PAGE, AGGMASK_LICENCE, mask_ap=39.2,
        note=_AGGMASK_NOTE),
    "AggMask/AggMaskStar_R50_HalfMaskGrid.yaml": Entry(
        "AggMask* -mask-grid", "R-50", "3x (36 epochs)", AGGMASK_PAGE, AGGMASK_LICENCE,
        note="the authors published the -mask-grid form for R-101 only"),
}

# Configs of this repository with no reference checkpoint: trained here (Shapes), or starting points.
LOCAL_NOTE = {
    "Shapes/": "trained in minutes on the built-in shapes dataset (tools/main_job.py); no published checkpoint",
    "Custom/": "a starting config for your own photos; no checkpoint of its own",
}
