"""Model versions on disk and in the store, activation, rollback, shadow scoring.

- ServingService(store, home, gate_config) / ServingService.open(home): the facade the daemon
  and the CLI use: estimate, register, gate, activate, rollback, auto_rollback_check,
  set_shadow / shadow_report, list_versions, show, history.
- Registry: folders under <home>/models/<version>/ (read-only) and their rows; recover().
- GateRefusedError: activation refused by a gate (exit code 4).
"""

from appliance.registry.registry import Recovery, Registry
from appliance.registry.service import GateRefusedError, ServingService

__all__ = ["GateRefusedError", "Recovery", "Registry", "ServingService"]
