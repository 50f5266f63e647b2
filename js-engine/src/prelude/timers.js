// Timers. The Rust event loop asks for the delay until the next due timer,
// sleeps, then runs it (microtasks run after every callback, as in Node).
// Ordered by due time, then creation order.

const timers = new Map();
let nextTimerId = 1;
let timerSequence = 0;

function addTimer(callback, delay, args, repeat) {
  if (typeof callback !== 'function') {
    throw new TypeError(`The "callback" argument must be of type function. Received ${inspect(callback, { depth: 0 })}`);
  }
  delay = Number(delay);
  // Node: delays that are not in [1, 2^31-1] become 1 ms.
  if (!(delay >= 1 && delay <= 2147483647)) delay = 1;
  const id = nextTimerId++;
  timers.set(id, { id, callback, args, due: native.now() + delay, seq: timerSequence++, repeat: repeat ? delay : 0 });
  return id;
}

function clearTimer(id) {
  timers.delete(Number(id));
}

function earliestTimer() {
  let earliest;
  for (const timer of timers.values()) {
    if (earliest === undefined || timer.due < earliest.due || (timer.due === earliest.due && timer.seq < earliest.seq)) {
      earliest = timer;
    }
  }
  return earliest;
}

Object.assign(globalThis, {
  setTimeout: function setTimeout(callback, delay, ...args) {
    return addTimer(callback, delay, args, false);
  },
  setInterval: function setInterval(callback, delay, ...args) {
    return addTimer(callback, delay, args, true);
  },
  setImmediate: function setImmediate(callback, ...args) {
    const id = addTimer(callback, 1, args, false);
    timers.get(id).due = native.now();
    return id;
  },
  clearTimeout: clearTimer,
  clearInterval: clearTimer,
  clearImmediate: clearTimer,
});

// Milliseconds until the next timer is due (0 if overdue), or -1 if none.
internals.nextTimerDelay = function nextTimerDelay() {
  const timer = earliestTimer();
  if (timer === undefined) return -1;
  return Math.max(0, timer.due - native.now());
};

// Runs the earliest timer; its exception propagates (an uncaught error).
internals.runNextTimer = function runNextTimer() {
  const timer = earliestTimer();
  if (timer === undefined) return;
  if (timer.repeat > 0) {
    timer.due = native.now() + timer.repeat;
    timer.seq = timerSequence++;
  } else {
    timers.delete(timer.id);
  }
  Reflect.apply(timer.callback, globalThis, timer.args);
};
