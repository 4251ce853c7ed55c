import assert from "node:assert/strict";
import { TryTimeouts } from "../../src/upstream/try_timeouts.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("TryTimeouts: one timer calls every timeout not crossed out, oldest first", async () => {
  const timeouts = new TryTimeouts(30);
  try {
    const called: number[] = [];
    const tickets = Array.from({ length: 600 }, (_, i) => timeouts.add(() => called.push(i)));
    assert.equal(timeouts.size, 600, "the ring grew past its first 256 slots");
    for (let i = 0; i < 600; i += 2) timeouts.cancel(tickets[i]!);
    timeouts.cancel(tickets[1]!);
    timeouts.cancel(tickets[1]!); // twice: no harm
    await sleep(10);
    assert.deepEqual(called, [], "nothing before its time");
    await sleep(80);
    const expected = Array.from({ length: 300 }, (_, i) => 2 * i + 1).filter((i) => i !== 1);
    assert.deepEqual(called, expected);
    assert.equal(timeouts.size, 0);
    timeouts.cancel(tickets[3]!); // already called: left alone
  } finally {
    timeouts.close();
  }
});

Deno.test("TryTimeouts: timeouts added later wait their own full length", async () => {
  const timeouts = new TryTimeouts(40);
  try {
    const at: Record<string, number> = {};
    const t0 = performance.now();
    timeouts.add(() => at.first = performance.now() - t0);
    await sleep(25);
    timeouts.add(() => at.second = performance.now() - t0);
    await sleep(30);
    assert.equal(at.second, undefined, "not before its own 40 ms");
    for (let i = 0; i < 100 && at.second === undefined; i++) await sleep(10);
    assert.ok(at.first! >= 40 && at.second! >= 65, JSON.stringify(at)); // 25 ms later, 40 ms long
  } finally {
    timeouts.close();
  }
});

Deno.test("TryTimeouts: close() calls nothing more and leaves no timer", async () => {
  const timeouts = new TryTimeouts(20);
  let called = 0;
  timeouts.add(() => called++);
  timeouts.close();
  timeouts.add(() => called++); // after close: kept, never called, no timer armed
  await sleep(50);
  assert.equal(called, 0);
});
