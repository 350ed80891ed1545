'use strict';
// Payload options that make the sample use known amounts of what Contrail reads from /proc, the
// same as the Python sample's (resources.py). Each key is optional; the handler runs them in
// this order before the order itself:
//
// - `burn_cpu_ms`: spin on the CPU for that many milliseconds of this process's CPU time
//   (`process.cpuUsage`), in user mode;
// - `alloc_mb` with `alloc_after_ms`: wait that long, then allocate and touch that many MiB, and
//   hold them until `hold_ms` has passed, then drop them (V8 returns the memory at its next
//   collection, which the handler forces when Node runs with `--expose-gc`);
// - `tmp_bytes`: write that many bytes to `/tmp/contrail-sample-<requestId>` and fsync it (the
//   file is removed at the start of the next invocation that writes);
// - `sleep_ms`: wait that long.

const fs = require('fs');
const path = require('path');

const MIB = 1024 * 1024;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** This process's user + system CPU time, in milliseconds. */
function cpuMs() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

function burn(ms) {
  // process.cpuUsage is a system call: look at it only every 100,000 additions, so that the
  // time spent is user time.
  const end = cpuMs() + ms;
  let x = 0;
  while (cpuMs() < end) {
    for (let i = 0; i < 100000; i += 1) {
      x += i;
    }
  }
  return x;
}

async function alloc(mb, afterMs, holdMs) {
  await sleep(afterMs);
  // allocUnsafe takes the memory without writing it; filling it makes every page resident.
  let block = Buffer.allocUnsafe(mb * MIB);
  block.fill(1);
  await sleep(holdMs);
  // Read after the wait: a block not used after it would be dead while the function awaits,
  // and V8 could collect it before the hold is over.
  const touched = block[0] + block[block.length - 1];
  block = null;
  if (typeof global.gc === 'function') {
    global.gc();
  }
  return touched;
}

function tmp(size, requestId) {
  for (const name of fs.readdirSync('/tmp')) {
    if (name.startsWith('contrail-sample-')) {
      fs.rmSync(path.join('/tmp', name), { force: true });
    }
  }
  const chunk = Buffer.alloc(MIB, 'x');
  const fd = fs.openSync(`/tmp/contrail-sample-${requestId}`, 'w');
  try {
    for (let left = size; left > 0; left -= chunk.length) {
      fs.writeSync(fd, chunk, 0, Math.min(left, chunk.length));
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Do what the payload asks; returns what was done, for the response. */
async function useResources(event, requestId) {
  const done = {};
  if (!event || typeof event !== 'object') {
    return done;
  }
  if ('burn_cpu_ms' in event) {
    burn(Number(event.burn_cpu_ms));
    done.burned_ms = Number(event.burn_cpu_ms);
  }
  if ('alloc_mb' in event) {
    await alloc(
      Number(event.alloc_mb),
      Number(event.alloc_after_ms || 0),
      Number(event.hold_ms || 0),
    );
    done.allocated_mb = Number(event.alloc_mb);
  }
  if ('tmp_bytes' in event) {
    tmp(Number(event.tmp_bytes), requestId);
    done.tmp_bytes = Number(event.tmp_bytes);
  }
  if ('sleep_ms' in event) {
    await sleep(Number(event.sleep_ms));
  }
  return done;
}

module.exports = { useResources };
