import anyio
import pytest

from batch_inpaint.inflight import ByteBudget


@pytest.mark.asyncio
async def test_callers_wait_until_their_bytes_fit_and_one_always_passes() -> None:
    budget = ByteBudget(100)
    await budget.acquire(250)  # bigger than the budget: let through alone
    order: list[str] = []

    async def take(name: str, amount: int) -> None:
        await budget.acquire(amount)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "a", 60)
        await anyio.sleep(0.01)
        assert order == []  # 250 in use: nothing else fits
        budget.release(250)
        await anyio.sleep(0.01)
        assert order == ["a"] and budget.used == 60
        tg.start_soon(take, "b", 60)
        await anyio.sleep(0.01)
        assert order == ["a"]  # 60 + 60 > 100
        budget.release(60)
    assert order == ["a", "b"] and budget.used == 60
