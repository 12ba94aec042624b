"""The exam set: a stable share of holes that no training ever sees.

Membership depends only on the hole id (sha256), so it never changes as holes are added,
relabelled or exported, and the same hole is in or out on every appliance.
"""

from __future__ import annotations

import hashlib

DEFAULT_EXAM_SHARE = 0.2


def is_exam(hole_id: str, share: float = DEFAULT_EXAM_SHARE) -> bool:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"exam share must be within 0..1, got {share}")
    digest = hashlib.sha256(hole_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share
