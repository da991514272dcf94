"""Config key names: listing them, adding missing defaults, and rejecting unknown keys with a hint.

The unknown-key checks compare key names themselves (override KEYs, the keys of a yaml file and of
its ``_BASE_`` chain) with the config's keys before detectron2 merges anything, so the hint does not
depend on the wording of detectron2's exceptions. Keys that detectron2's config handles itself
(deprecated, renamed, keys of older config versions, nodes that allow new keys) are left to it.
"""

import difflib
import os

import yaml
from detectron2.config import CfgNode as CN

BASE_KEY = "_BASE_"


class UnknownConfigKeyError(KeyError):
    """A config key that the config does not have; the message names the closest valid keys."""

    def __init__(self, key, suggestions=(), source=None):
        self.key = key
        self.suggestions = list(suggestions)
        self.source = source
        message = f"Unknown config key {key}."
        if self.suggestions:
            message += f" Did you mean {' or '.join(self.suggestions)}?"
        if source:
            message += f" (in {source})"
        self.message = message
        super().__init__(message)

    def __str__(self):
        return self.message


def add_missing(dst, src):
    """Copy the keys of ``src`` missing from ``dst`` into ``dst``, recursively; keep what is there."""
    for key, value in src.items():
        if key not in dst:
            dst[key] = value
        elif isinstance(value, CN) and isinstance(dst[key], CN):
            add_missing(dst[key], value)
    return dst


def all_keys(node, prefix=""):
    """Every full (dotted) leaf key name of a config node, in order."""
    keys = []
    for key, value in node.items():
        name = f"{prefix}{key}"
        keys.extend(all_keys(value, name + ".") if isinstance(value, CN) else [name])
    return keys


def close_keys(key, candidates, n=3, cutoff=0.6, margin=0.05):
    """Up to ``n`` of ``candidates`` closest to ``key`` (difflib ratio at least ``cutoff``), best
    first, keeping only those about as close as the best one (within ``margin``)."""
    scored = []
    for candidate in candidates:
        matcher = difflib.SequenceMatcher(None, key, candidate)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff:
            ratio = matcher.ratio()
            if ratio >= cutoff:
                scored.append((ratio, candidate))
    if not scored:
        return []
    best = max(ratio for ratio, _ in scored)
    scored = sorted((s for s in scored if s[0] >= best - margin), key=lambda s: -s[0])
    return [candidate for _, candidate in scored[:n]]


def unknown_key_error(cfg, key, source=None):
    """An ``UnknownConfigKeyError`` for ``key`` naming the closest of ``cfg``'s full key names."""
    return UnknownConfigKeyError(key, close_keys(key, all_keys(cfg)), source)


def _handled_by_detectron2(cfg, full_key):
    return cfg.key_is_deprecated(full_key) or cfg.key_is_renamed(full_key)


def _find_unknown(cfg, parts):
    """The first prefix of ``parts`` that ``cfg`` does not have, or None when the path exists
    (or ends inside a node that allows new keys, or at a leaf with further parts: a type question
    that detectron2 answers)."""
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, CN):
            return None
        if part not in node:
            return None if node.is_new_allowed() else parts[: i + 1]
        node = node[part]
    return None


def _legacy_keys(cfg):
    """Key names of the older config versions that detectron2 still upgrades on merge_from_file."""
    from detectron2.config.compat import downgrade_config

    names = set()
    try:
        for version in range(int(cfg.VERSION)):
            old = downgrade_config(cfg, to_version=version)
            for key in all_keys(old):
                parts = key.split(".")
                names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    except Exception:  # not a detectron2 config with versions: nothing to add
        pass
    return names


def check_opts_keys(cfg, opts):
    """Raise ``UnknownConfigKeyError`` for the first KEY of the KEY VALUE pairs ``opts`` not in ``cfg``.

    ``opts`` must have even length (see ``load_config`` for the friendly error).
    """
    opts = list(opts)
    for key in opts[0::2]:
        if not isinstance(key, str) or _handled_by_detectron2(cfg, key):
            continue
        if _find_unknown(cfg, key.split(".")) is not None:
            raise unknown_key_error(cfg, key, source="overrides")


def _resolve_base(base, filename):
    base = os.path.expanduser(base)
    if base.startswith(("/", "http://", "https://")):
        return base
    return os.path.join(os.path.dirname(filename), base)


def _read_yaml_chain(filename, seen=None):
    """``[(path, dict), ...]`` for ``filename`` and its ``_BASE_`` chain, bases first.

    Files that cannot be read here (URLs, missing files, yaml needing the unsafe loader) are
    skipped, together with their bases: detectron2 reads or rejects them when merging.
    """
    seen = set() if seen is None else seen
    path = os.path.abspath(str(filename))
    if path in seen or not os.path.isfile(path):
        return []
    seen.add(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError:
        return []
    if not isinstance(data, dict):
        return []
    chain = []
    bases = data.get(BASE_KEY)
    for base in bases if isinstance(bases, list) else [bases] if bases else []:
        if isinstance(base, str):
            chain.extend(_read_yaml_chain(_resolve_base(base, path), seen))
    chain.append((str(filename), data))
    return chain


def _first_leaf(prefix, value):
    """The first full leaf key under an unknown yaml subtree (a better match for the hint)."""
    while isinstance(value, dict) and value:
        key, value = next(iter(value.items()))
        prefix = f"{prefix}.{key}"
    return prefix


def _walk(cfg, data, node, prefix, source, legacy):
    for key, value in data.items():
        if not prefix and key == BASE_KEY:
            continue
        full = f"{prefix}{key}"
        if key in node:
            child = node[key]
            if isinstance(value, dict) and isinstance(child, CN):
                legacy = _walk(cfg, value, child, full + ".", source, legacy)
            continue
        if node.is_new_allowed() or _handled_by_detectron2(cfg, full):
            continue
        if legacy is None:
            legacy = _legacy_keys(cfg)
        if full in legacy:
            continue
        raise unknown_key_error(cfg, _first_leaf(full, value), source=source)
    return legacy


def check_yaml_keys(cfg, config_file):
    """Raise ``UnknownConfigKeyError`` for the first key of ``config_file`` (or of a file in its
    ``_BASE_`` chain, which is read with ``yaml.safe_load``) that ``cfg`` does not have."""
    legacy = None
    for path, data in _read_yaml_chain(config_file):
        legacy = _walk(cfg, data, cfg, "", path, legacy)
