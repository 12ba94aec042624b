"""Hot swap under load: many threads estimate while versions are activated and rolled back."""

from __future__ import annotations

import threading
from pathlib import Path

from model_fixtures import build_model_folder, ramp_trace

from appliance.config import GateConfig
from appliance.registry import ServingService


def test_no_request_fails_and_each_is_tagged_with_a_version_active_during_it(
    home: Path, tmp_path: Path
) -> None:
    cands = tmp_path / "candidates"
    cands.mkdir()
    service = ServingService.open(home, GateConfig(min_exam=0),
                                  baseline_dir=build_model_folder(cands, "v1"))
    for v, shift in (("v2", 2), ("v3", -2)):
        service.register(build_model_folder(cands, v, shift=shift))
        assert service.gate(v).passed

    # Every swap is logged under one lock together with the swap itself, so a request that
    # notes the log length before and after knows exactly which versions were active meanwhile.
    lock = threading.Lock()
    swaps: list[str | None] = [service.holder.version]
    original = service.holder.swap

    def logged_swap(engine):
        with lock:
            old = original(engine)
            swaps.append(service.holder.version)
            return old

    service.holder.swap = logged_swap
    traces = [ramp_trace(entry_mm=3 + i * 0.3, exit_mm=14 + i * 0.4, seed=i) for i in range(6)]
    stop = threading.Event()
    failures: list[BaseException] = []
    wrong_tags: list[tuple[str | None, list]] = []
    seen: set[str] = set()
    served = [0]

    def client(k: int) -> None:
        i = k
        while not stop.is_set():
            with lock:
                g0 = len(swaps)
            try:
                est = service.estimate(traces[i % len(traces)])
            except BaseException as exc:
                failures.append(exc)
                return
            with lock:
                g1 = len(swaps)
                during = swaps[g0 - 1:g1]
                served[0] += 1
            if est.estimator != "ensemble" or est.model_version not in during:
                wrong_tags.append((est.model_version, during))
            seen.add(est.model_version)
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        for _ in range(4):
            service.activate("v2", actor="load-test")
            service.activate("v3", actor="load-test")
            service.rollback(actor="load-test")  # back to v2
            service.rollback("v1", actor="load-test")
    finally:
        stop.set()
        for t in threads:
            t.join()
    service.close()
    assert not failures, failures[:3]
    assert not wrong_tags, wrong_tags[:3]
    assert served[0] > 50
    assert len(swaps) == 1 + 16 and seen == {"v1", "v2", "v3"}
