//! A deadline-aware `poll_oneoff`, the WASIp1 call behind `sleep`.
//!
//! Epoch interruption only stops *wasm* code. wasmtime-wasi implements
//! `poll_oneoff` by blocking the host thread for as long as the guest asks, so
//! `std::thread::sleep(Duration::from_secs(3600))` would hold a worker thread
//! for an hour, far past the run's timeout. This replacement (shadowing the
//! wasmtime-wasi definition in the linker) never sleeps past the run's
//! deadline and ends the run with [`DeadlineExceeded`] when it would.
//!
//! The guest's descriptor table is fixed (stdin, stdout, stderr; no preopens,
//! no sockets), all of them in-memory pipes that never block, so descriptor
//! subscriptions are simply always ready: `fd_read` on 0 and `fd_write` on 1
//! and 2 succeed, anything else gets a `badf` event.
//!
//! ABI: `poll_oneoff(in: *const subscription, out: *mut event, nsubscriptions:
//! u32, nevents: *mut u32) -> errno`, layouts from
//! <https://github.com/WebAssembly/WASI/blob/main/legacy/preview1/docs.md#poll_oneoff>.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::HostMonotonicClock;

use super::engine::EPOCH_TICK;
use super::CancelFlag;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: u16 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

const CLOCKID_REALTIME: u32 = 0;
const CLOCKID_MONOTONIC: u32 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

/// The run ended because the guest wanted to sleep past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run's deadline passed while the guest was sleeping")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The run ended because it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run was cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// The guest's monotonic clock: nanoseconds since the run started.
///
/// Our own clock (instead of the host's raw `CLOCK_MONOTONIC`) so that
/// `poll_oneoff` can interpret absolute monotonic timeouts, and so the guest
/// does not learn the host's uptime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuestClock {
    origin: Instant,
}

impl GuestClock {
    pub(crate) fn starting_at(origin: Instant) -> Self {
        Self { origin }
    }

    fn nanos_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.nanos_at(Instant::now())
    }
}

/// What `poll_oneoff` needs from the store's data.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub(crate) deadline: Instant,
    pub(crate) clock: GuestClock,
    pub(crate) cancel: CancelFlag,
}

/// Replaces wasmtime-wasi's `poll_oneoff`; call after `p1::add_to_linker_sync`.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    timing: fn(&T) -> Timing,
) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        move |caller: Caller<'_, T>, subs: i32, events: i32, nsubs: i32, nevents: i32| {
            // wasm32 pointers and sizes arrive as i32; reinterpret as u32.
            poll_oneoff(
                caller,
                timing,
                [subs, events, nsubs, nevents].map(|v| v as u32 as usize),
            )
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One subscription, with clock timeouts turned into "ready after" durations
/// measured from a single `now`.
enum Subscription {
    Clock {
        userdata: u64,
        after: Duration,
    },
    Fd {
        userdata: u64,
        eventtype: u8,
        fd: u32,
    },
}

/// The instant `poll_oneoff` was called, on both clocks a guest can name.
struct Now {
    instant: Instant,
    wall_nanos: u64,
}

fn poll_oneoff<T>(
    mut caller: Caller<'_, T>,
    timing: fn(&T) -> Timing,
    [subs_ptr, events_ptr, nsubs, nevents_ptr]: [usize; 4],
) -> wasmtime::Result<i32> {
    if nsubs == 0 {
        // Waiting for nothing would block forever; WASI defines it as EINVAL.
        return Ok(ERRNO_INVAL);
    }
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        wasmtime::bail!("poll_oneoff: the module exports no memory");
    };
    let Timing {
        deadline,
        clock,
        cancel,
    } = timing(caller.data());
    let now = Now {
        instant: Instant::now(),
        wall_nanos: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    };

    // Pass 1 (no allocation: `nsubs` is guest-controlled): is anything ready
    // now, and if not, when is the first clock due?
    let mut ready_now = false;
    let mut first_due = Duration::MAX;
    {
        let data = memory.data(&caller);
        for index in 0..nsubs {
            match read_subscription(data, subs_ptr, index, &now, clock) {
                Ok(Subscription::Fd { .. }) => ready_now = true,
                Ok(Subscription::Clock { after, .. }) if after.is_zero() => ready_now = true,
                Ok(Subscription::Clock { after, .. }) => first_due = first_due.min(after),
                Err(errno) => return Ok(errno),
            }
        }
    }

    let waited = if ready_now {
        Duration::ZERO
    } else {
        let budget = deadline.saturating_duration_since(Instant::now());
        if first_due > budget {
            sleep(budget, &cancel)?;
            return Err(wasmtime::Error::new(DeadlineExceeded));
        }
        sleep(first_due, &cancel)?;
        first_due
    };

    // Pass 2: one event per subscription that is ready after `waited`.
    let data = memory.data_mut(&mut caller);
    let mut written = 0usize;
    for index in 0..nsubs {
        let event = match read_subscription(data, subs_ptr, index, &now, clock) {
            Ok(Subscription::Clock { userdata, after }) if after <= waited => Event {
                userdata,
                errno: 0,
                eventtype: EVENTTYPE_CLOCK,
            },
            Ok(Subscription::Clock { .. }) => continue,
            Ok(Subscription::Fd {
                userdata,
                eventtype,
                fd,
            }) => {
                let open = matches!(
                    (eventtype, fd),
                    (EVENTTYPE_FD_READ, 0) | (EVENTTYPE_FD_WRITE, 1 | 2)
                );
                Event {
                    userdata,
                    errno: if open { 0 } else { ERRNO_BADF },
                    eventtype,
                }
            }
            Err(errno) => return Ok(errno),
        };
        if event.write(data, events_ptr, written).is_none() {
            return Ok(ERRNO_FAULT);
        }
        written += 1;
    }
    let Some(slot) = region(data, nevents_ptr, 4) else {
        return Ok(ERRNO_FAULT);
    };
    // `written <= nsubs`, which came from a u32.
    slot.copy_from_slice(&u32::try_from(written).unwrap_or(u32::MAX).to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

/// Sleeps for `duration`, waking every epoch tick to honour a cancellation.
fn sleep(duration: Duration, cancel: &CancelFlag) -> wasmtime::Result<()> {
    let until = Instant::now() + duration;
    loop {
        if cancel.is_cancelled() {
            return Err(wasmtime::Error::new(Cancelled));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(EPOCH_TICK));
    }
}

fn read_subscription(
    data: &[u8],
    subs_ptr: usize,
    index: usize,
    now: &Now,
    clock: GuestClock,
) -> Result<Subscription, i32> {
    let offset = index
        .checked_mul(SUBSCRIPTION_SIZE)
        .and_then(|o| o.checked_add(subs_ptr));
    let sub = offset
        .and_then(|o| data.get(o..o.checked_add(SUBSCRIPTION_SIZE)?))
        .ok_or(ERRNO_FAULT)?;
    let u64_at = |at: usize| u64::from_le_bytes(sub[at..at + 8].try_into().unwrap_or_default());
    let u32_at = |at: usize| u32::from_le_bytes(sub[at..at + 4].try_into().unwrap_or_default());
    let userdata = u64_at(0);
    match sub[8] {
        EVENTTYPE_CLOCK => {
            let timeout = u64_at(24);
            let absolute = u16::from_le_bytes([sub[40], sub[41]]) & SUBCLOCKFLAGS_ABSTIME != 0;
            let after_nanos = match (u32_at(16), absolute) {
                (CLOCKID_REALTIME | CLOCKID_MONOTONIC, false) => timeout,
                (CLOCKID_MONOTONIC, true) => timeout.saturating_sub(clock.nanos_at(now.instant)),
                (CLOCKID_REALTIME, true) => timeout.saturating_sub(now.wall_nanos),
                // CPU-time clocks cannot be waited on (wasmtime-wasi agrees).
                _ => return Err(ERRNO_INVAL),
            };
            Ok(Subscription::Clock {
                userdata,
                after: Duration::from_nanos(after_nanos),
            })
        }
        eventtype @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => Ok(Subscription::Fd {
            userdata,
            eventtype,
            fd: u32_at(16),
        }),
        _ => Err(ERRNO_INVAL),
    }
}

struct Event {
    userdata: u64,
    errno: u16,
    eventtype: u8,
}

impl Event {
    /// Writes the `index`th event; `None` if it falls outside memory.
    fn write(&self, data: &mut [u8], events_ptr: usize, index: usize) -> Option<()> {
        let slot = region(
            data,
            index.checked_mul(EVENT_SIZE)?.checked_add(events_ptr)?,
            EVENT_SIZE,
        )?;
        // Zeroed: `fd_readwrite.nbytes` and `.flags` stay 0 — in-memory pipes
        // have no meaningful byte count, and readiness is what callers need.
        slot.fill(0);
        slot[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        slot[8..10].copy_from_slice(&self.errno.to_le_bytes());
        slot[10] = self.eventtype;
        Some(())
    }
}

fn region(data: &mut [u8], start: usize, len: usize) -> Option<&mut [u8]> {
    data.get_mut(start..start.checked_add(len)?)
}
