//! The user's choice: `--seccomp on|off|log`.

use std::fmt;
use std::str::FromStr;

/// What a forbidden system call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Filters installed; a forbidden call is reported on stderr and ends the
    /// process with [`crate::STATUS_FORBIDDEN_SYSCALL`] (SECCOMP_RET_TRAP).
    #[default]
    On,
    /// Nothing installed.
    Off,
    /// Filters installed; a forbidden call is allowed and the kernel logs it
    /// (SECCOMP_RET_LOG: an audit record in the kernel log, see `dmesg`).
    Log,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
            Mode::Log => "log",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--seccomp` value that is none of on, off, log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a seccomp mode (on, off, log)")]
pub struct BadMode(pub String);

impl FromStr for Mode {
    type Err = BadMode;
    fn from_str(s: &str) -> Result<Self, BadMode> {
        match s {
            "on" => Ok(Mode::On),
            "off" => Ok(Mode::Off),
            "log" => Ok(Mode::Log),
            other => Err(BadMode(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_modes_and_rejects_others() {
        for m in [Mode::On, Mode::Off, Mode::Log] {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert_eq!(
            "yes".parse::<Mode>(),
            Err(BadMode("yes".into())),
            "only on/off/log are modes"
        );
        assert!("ON".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::On);
    }
}
