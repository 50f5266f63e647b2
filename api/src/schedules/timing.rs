//! When a schedule fires: its cron expression read in its time zone
//! (croner parses and steps through the expression, daylight-saving changes
//! included; chrono-tz knows the zones), and which due ticks fire when the
//! scheduler finds several at once.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::error::Error;

/// How many upcoming ticks a schedule's answer lists (`nextFireTimes`).
pub const NEXT_FIRE_TIMES: usize = 5;

/// The most due ticks looked at for one schedule before only the latest is
/// looked for: a schedule every second that was down for a day has 86 400.
const MAX_TICKS_WALKED: usize = 1000;

/// A valid cron expression and time zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    zone: Tz,
}

impl Timing {
    /// Parses `cron` (5 fields, or 6 with seconds first; croner's syntax,
    /// which is Vixie cron's plus `L`, `W`, `#` and `@hourly` and the like)
    /// and `timezone` (an IANA name such as `Europe/Paris`). A refusal names
    /// the field and why. An expression that never fires is refused too.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, Error> {
        let zone: Tz = timezone.parse().map_err(|_| {
            Error::BadRequest(format!(
                "`timezone` must be an IANA time zone name such as \"UTC\" or \"Europe/Paris\", got {timezone:?}"
            ))
        })?;
        let parsed = Cron::new(cron.trim())
            .with_seconds_optional()
            .parse()
            .map_err(|error| {
                Error::BadRequest(format!(
                    "`cron` is not a valid cron expression (5 fields: minute hour day-of-month month day-of-week, or 6 with seconds first): {error}"
                ))
            })?;
        let timing = Timing { cron: parsed, zone };
        if timing.next_after(Utc::now()).is_none() {
            return Err(Error::BadRequest(format!(
                "`cron` {cron:?} never fires (no matching time in the years ahead)"
            )));
        }
        Ok(timing)
    }

    /// The first tick strictly after `after`, if there is one. A local time
    /// skipped by a daylight-saving change fires at the same instant as the
    /// first time after the change; a repeated one fires once.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|tick| tick.with_timezone(&Utc))
    }

    /// The first `n` ticks strictly after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |tick| self.next_after(*tick))
            .take(n)
            .collect()
    }
}

/// What a schedule does with ticks that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedTicks {
    /// Run the latest of them once.
    RunLatest,
    /// Run none of them: wait for the next tick.
    Skip,
}

impl MissedTicks {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedTicks::RunLatest => "runLatest",
            MissedTicks::Skip => "skip",
        }
    }

    /// The policy named `name`; a refusal names the field.
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "runLatest" => Ok(MissedTicks::RunLatest),
            "skip" => Ok(MissedTicks::Skip),
            other => Err(Error::BadRequest(format!(
                "`missedTicks` must be \"runLatest\" or \"skip\", got {other:?}"
            ))),
        }
    }
}

/// What the scheduler does with a schedule whose `next_fire_at` is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The tick to fire now, if any.
    pub fire: Option<DateTime<Utc>>,
    /// Whether ticks were missed (more than one was due).
    pub missed: bool,
    /// The schedule's next tick after this, strictly after `now`.
    pub next: Option<DateTime<Utc>>,
}

/// The ticks due at `now` for a schedule whose next tick is `next_fire_at`
/// (at or before `now`). One due tick fires, however late: it is the tick
/// the schedule is waiting for. Several due ticks mean no scheduler ran
/// through the earlier ones (all processes were down, or the database
/// was): `policy` says whether the latest of them fires once, or none; never
/// all of them (no burst on recovery).
pub fn due(
    timing: &Timing,
    next_fire_at: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: MissedTicks,
) -> Due {
    let mut latest = next_fire_at;
    let mut walked = 0;
    while let Some(tick) = timing.next_after(latest).filter(|tick| *tick <= now) {
        latest = tick;
        walked += 1;
        if walked == MAX_TICKS_WALKED {
            // Far behind: the latest due tick is the last one before `now`.
            latest = last_at_or_before(timing, latest, now);
            break;
        }
    }
    let missed = latest != next_fire_at;
    let fire = match (missed, policy) {
        (false, _) | (true, MissedTicks::RunLatest) => Some(latest),
        (true, MissedTicks::Skip) => None,
    };
    Due {
        fire,
        missed,
        next: timing.next_after(now),
    }
}

/// The last tick at or before `now`, `from` being one: found in the
/// smallest window `(now - w, now]` (w = 1 s, 2 s, 4 s, …) that holds a
/// tick, instead of stepping through every tick since `from`.
fn last_at_or_before(timing: &Timing, from: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut window = chrono::TimeDelta::seconds(1);
    let mut latest = from;
    while now - window > from {
        if let Some(tick) = timing.next_after(now - window).filter(|tick| *tick <= now) {
            latest = tick;
            break;
        }
        window = window * 2;
    }
    while let Some(tick) = timing.next_after(latest).filter(|tick| *tick <= now) {
        latest = tick;
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn five_and_six_fields_parse_and_bad_ones_name_the_field() {
        assert!(Timing::parse("*/5 * * * *", "UTC").is_ok());
        assert!(Timing::parse("* * * * * *", "Europe/Paris").is_ok());
        let bad_cron = Timing::parse("61 * * * *", "UTC").unwrap_err().to_string();
        assert!(bad_cron.contains("`cron`"), "{bad_cron}");
        let bad_zone = Timing::parse("* * * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(bad_zone.contains("`timezone`"), "{bad_zone}");
    }

    #[test]
    fn ticks_follow_the_zone_across_daylight_saving_changes() {
        // Paris springs forward on 2026-03-29 (02:00 → 03:00, UTC+1 → +2).
        let timing = Timing::parse("30 9 * * *", "Europe/Paris").unwrap();
        let ticks = timing.upcoming(at("2026-03-27T12:00:00Z"), 3);
        assert_eq!(
            ticks,
            vec![
                at("2026-03-28T08:30:00Z"),
                at("2026-03-29T07:30:00Z"),
                at("2026-03-30T07:30:00Z"),
            ]
        );
    }

    #[test]
    fn one_due_tick_fires_however_late() {
        let timing = Timing::parse("0 * * * *", "UTC").unwrap();
        let due = due(
            &timing,
            at("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:20:00Z"),
            MissedTicks::Skip,
        );
        assert_eq!(due.fire, Some(at("2026-12-07T10:00:00Z")));
        assert!(!due.missed);
        assert_eq!(due.next, Some(at("2026-12-07T11:00:00Z")));
    }

    #[test]
    fn missed_ticks_run_the_latest_once_or_none() {
        let timing = Timing::parse("* * * * * *", "UTC").unwrap();
        let (from, now) = (at("2026-12-07T10:00:00Z"), at("2026-12-07T10:00:10.5Z"));
        let latest = due(&timing, from, now, MissedTicks::RunLatest);
        assert_eq!(latest.fire, Some(at("2026-12-07T10:00:10Z")));
        assert!(latest.missed);
        assert_eq!(latest.next, Some(at("2026-12-07T10:00:11Z")));
        let skip = due(&timing, from, now, MissedTicks::Skip);
        assert_eq!(skip.fire, None);
        assert_eq!(skip.next, Some(at("2026-12-07T10:00:11Z")));
    }

    #[test]
    fn a_day_behind_a_schedule_every_second_finds_the_latest_tick() {
        let timing = Timing::parse("* * * * * *", "UTC").unwrap();
        let due = due(
            &timing,
            at("2026-12-06T10:00:00Z"),
            at("2026-12-07T10:00:00.5Z"),
            MissedTicks::RunLatest,
        );
        assert_eq!(due.fire, Some(at("2026-12-07T10:00:00Z")));
        assert_eq!(due.next, Some(at("2026-12-07T10:00:01Z")));
    }
}
