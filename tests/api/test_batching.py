"""The micro-batcher runs up to `concurrency` batches at once, each a fair share of the waiting requests,
and the service's default uses every core."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.batching import BatchPolicy, MicroBatcher
from api.settings import ServiceSettings, usable_cores
from indexing.settings import Settings, SettingsError


def _answers_with_two_batches_meeting(concurrency: int) -> list[str]:
    """Two requests, one per batch (max size 1); each batch waits up to 2 s for the other to be running too."""
    meeting = threading.Barrier(2, timeout=2.0)

    def run(items: list[int]) -> list[str]:
        try:
            meeting.wait()
            return ["together"] * len(items)
        except threading.BrokenBarrierError:
            return ["alone"] * len(items)

    async def main() -> list[str]:
        with ThreadPoolExecutor(max_workers=2) as executor:
            batcher = MicroBatcher(run, BatchPolicy(max_size=1, max_wait_s=0.0, concurrency=concurrency), executor)
            batcher.start()
            try:
                return list(await asyncio.gather(batcher.submit(1), batcher.submit(2)))
            finally:
                await batcher.stop()

    return asyncio.run(main())


def test_two_batches_run_at_once_with_concurrency_two_and_one_after_the_other_with_one() -> None:
    assert _answers_with_two_batches_meeting(2) == ["together", "together"]
    assert "together" not in _answers_with_two_batches_meeting(1)


def test_a_batch_takes_a_fair_share_waits_for_it_while_another_runs_and_runs_alone_when_none_does() -> None:
    gates = {item: threading.Event() for item in range(1, 8)}
    batches: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        batches.append(sorted(items))
        for item in items:
            gates[item].wait(5.0)
        return items

    async def main() -> None:
        with ThreadPoolExecutor(max_workers=2) as executor:
            batcher = MicroBatcher(run, BatchPolicy(max_size=16, max_wait_s=0.005, concurrency=2), executor)
            batcher.start()
            try:
                first = [asyncio.ensure_future(batcher.submit(item)) for item in (1, 2, 3, 4)]
                await asyncio.sleep(0.1)
                assert batches == [[1, 2], [3, 4]]  # four waiting, two batches at once: two each
                for item in (3, 4):
                    gates[item].set()
                assert await asyncio.gather(*first[2:]) == [3, 4]
                lone = asyncio.ensure_future(batcher.submit(5))
                await asyncio.sleep(0.1)
                assert len(batches) == 2  # [1, 2] still runs: 5 waits for a share rather than running alone
                for item in (5, 6):
                    gates[item].set()
                assert await asyncio.gather(lone, batcher.submit(6)) == [5, 6]
                assert batches[2] == [5, 6]
                late = asyncio.ensure_future(batcher.submit(7))
                await asyncio.sleep(0.1)
                assert len(batches) == 3
                for item in (1, 2, 7):
                    gates[item].set()
                assert await late == 7 and batches[3] == [7]  # nothing else runs: a lone request goes alone
                assert await asyncio.gather(*first[:2]) == [1, 2]
            finally:
                await batcher.stop()

    asyncio.run(main())


def test_the_default_concurrency_is_one_batch_per_core_on_the_cpu_one_on_a_gpu_sharing_the_threads() -> None:
    archive = Settings.from_env({})
    cpu = ServiceSettings.from_env({})
    assert cpu.concurrency == usable_cores() and cpu.torch_threads == 1
    assert ServiceSettings(archive=archive, device="cuda").concurrency == 1
    one = ServiceSettings.from_env({"S2M_BATCH_CONCURRENCY": "1"})
    assert one.concurrency == 1 and one.torch_threads == usable_cores()


def test_refine_steps_default_to_h_own_and_reject_what_is_not_a_small_count() -> None:
    assert ServiceSettings.from_env({}).refine_steps is None
    assert ServiceSettings.from_env({"S2M_REFINE_STEPS": "1"}).refine_steps == 1
    assert ServiceSettings.from_env({"S2M_REFINE_STEPS": "0"}).refine_steps == 0
    for bad in ("-1", "two", "11"):
        with pytest.raises(SettingsError, match="S2M_REFINE_STEPS"):
            ServiceSettings.from_env({"S2M_REFINE_STEPS": bad})
