//! A machine configuration's fingerprint: what must match for a snapshot to
//! be restored into a machine built from it (RAM size, vCPU count, firmware
//! or direct boot, the devices and their sizes), as `key=value` pairs. The
//! engine is not part of it: a snapshot moves between engines.
//!
//! It must not know the stream format; `check` names the first difference
//! in the user's terms.

use crate::config::{MachineConfig, NetConfig};

/// The pairs, in a fixed order.
pub fn fingerprint(config: &MachineConfig) -> Vec<(String, String)> {
    let mut fp = vec![
        ("memory".to_string(), config.memory.to_string()),
        ("cpus".to_string(), config.cpus.to_string()),
        (
            "boot".to_string(),
            if config.kernel.is_some() {
                "kernel"
            } else {
                "firmware"
            }
            .to_string(),
        ),
        ("disks".to_string(), config.disks.len().to_string()),
    ];
    for (i, d) in config.disks.iter().enumerate() {
        fp.push((format!("disk{i}.size"), file_size(&d.path)));
    }
    for (i, d) in config.ide.iter().enumerate() {
        let v = match d {
            None => "none".to_string(),
            Some(d) => format!("{:?}:{}", d.kind, file_size(&d.path)).to_lowercase(),
        };
        fp.push((format!("ide{i}"), v));
    }
    fp.push((
        "display".to_string(),
        config
            .display
            .as_ref()
            .map_or("none".to_string(), |d| format!("vga:{}", d.vram)),
    ));
    fp.push(("rng".to_string(), config.rng.to_string()));
    fp.push((
        "net".to_string(),
        match &config.net {
            None => "none",
            Some(NetConfig::Tap(_)) => "tap",
            Some(NetConfig::User(_)) => "user",
        }
        .to_string(),
    ));
    fp.push((
        "option_roms".to_string(),
        if config.kernel.is_some() {
            0
        } else {
            config.firmware.option_roms.len()
        }
        .to_string(),
    ));
    fp
}

fn file_size(path: &std::path::Path) -> String {
    std::fs::metadata(path).map_or("?".to_string(), |m| m.len().to_string())
}

/// How a user names a fingerprint key.
fn describe(key: &str, value: &str) -> String {
    let mib = |v: &str| {
        v.parse::<u64>()
            .map_or(v.to_string(), |b| format!("{} MiB", b >> 20))
    };
    match key {
        "memory" => format!("--memory {}", mib(value)),
        "cpus" => format!("--cpus {value}"),
        "boot" if value == "kernel" => "a --kernel".to_string(),
        "boot" => "firmware boot (no --kernel)".to_string(),
        "disks" => format!("{value} --disk"),
        k if k.starts_with("disk") => format!("{k} of {value} bytes"),
        k if k.starts_with("ide") => format!("IDE drive {}: {value}", &k[3..]),
        "display" => format!("display {value}"),
        "rng" => format!("rng {value}"),
        "net" => format!("network {value}"),
        _ => format!("{key} {value}"),
    }
}

/// Compare a snapshot's fingerprint with this machine's: the first
/// difference, in words, or Ok.
pub fn check(saved: &[(String, String)], ours: &[(String, String)]) -> Result<(), String> {
    for (k, v) in ours {
        match saved.iter().find(|(sk, _)| sk == k) {
            None => {
                return Err(format!(
                    "the snapshot does not record {k}; it is from another Kite"
                ))
            }
            Some((_, sv)) if sv != v => {
                return Err(format!(
                    "the snapshot is of a machine with {}, this one has {}",
                    describe(k, sv),
                    describe(k, v)
                ))
            }
            Some(_) => {}
        }
    }
    if let Some((k, _)) = saved
        .iter()
        .find(|(k, _)| !ours.iter().any(|(o, _)| o == k))
    {
        return Err(format!(
            "the snapshot records {k}, which this Kite does not know"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn differences_are_named_in_the_users_terms() {
        let ours = pairs(&[("memory", "268435456"), ("cpus", "2")]);
        assert_eq!(check(&ours, &ours), Ok(()));
        let saved = pairs(&[("memory", "134217728"), ("cpus", "2")]);
        let e = check(&saved, &ours).unwrap_err();
        assert!(e.contains("--memory 128 MiB"), "{e}");
        assert!(e.contains("--memory 256 MiB"), "{e}");
        let saved = pairs(&[("memory", "268435456"), ("cpus", "1")]);
        assert!(check(&saved, &ours).unwrap_err().contains("--cpus 1"));
        let saved = pairs(&[("memory", "268435456")]);
        assert!(check(&saved, &ours).is_err());
        let saved = pairs(&[("memory", "268435456"), ("cpus", "2"), ("gpu", "1")]);
        assert!(check(&saved, &ours).unwrap_err().contains("gpu"));
    }
}
