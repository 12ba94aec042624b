"""An operator's label, by either front door (PUT /holes/{id}/label, `appliance label`).

The store checks it (every point finite, inside the hole, entry < transition < exit; who set
it: printable, no control characters); here it is stored with the estimate it confirms and
audited under whoever made the change (an API key's name, or `cli:<login name>`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.points import DepthPoints
from appliance.store import Store


def add_label(store: Store, hole_id: str, points: DepthPoints, by: str, actor: str,
              from_estimate: dict[str, Any] | None) -> int:
    """Append the label (the hole's truth from now on) and audit it; its label id."""
    label_id = store.add_label(hole_id, points, by, origin="operator",
                               from_estimate=from_estimate, detail={"actor": actor})
    store.audit(actor, "label", hole_id, {"label_id": label_id, "by": by, **points.as_dict()})
    return label_id


def stored_estimate(store: Store, hole_id: str) -> dict[str, Any] | None:
    """The latest served estimate stored for the hole: what a label made now confirms (the
    daemon keeps these in memory; a verb with no daemon running reads the store)."""
    rows = store.predictions(hole_id, shadow=False)
    return msgspec.structs.asdict(rows[0].estimate) if rows else None
