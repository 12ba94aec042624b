"""DuckDB storage: holes, samples, labels, predictions, models, jobs, audit.

Public interface: `Store.open(home, read_only=False) -> Store` (see facade.py), the dataset
snapshot in snapshot.py (export_dataset, read_snapshot, exam_set, LabelledHole), and
is_exam in exam.py. Nothing outside this package writes SQL for these tables; a room that
needs its own query uses `store.cursor()` / `store.transaction()`.
"""

from appliance.store.connection import DB_FILENAME, StoreOpenError, db_path
from appliance.store.exam import DEFAULT_EXAM_SHARE, is_exam
from appliance.store.facade import Store
from appliance.store.schema import SchemaError, SchemaTooNewError

__all__ = [
    "DB_FILENAME",
    "DEFAULT_EXAM_SHARE",
    "SchemaError",
    "SchemaTooNewError",
    "Store",
    "StoreOpenError",
    "db_path",
    "is_exam",
]
