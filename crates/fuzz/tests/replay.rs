//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) and crash
//! regressions (fuzz/regressions/<target>/) through the harnesses, on
//! stable, as part of `cargo test`. Every target must have a non-empty
//! corpus; a target's regressions directory exists only once a crash was
//! found and fixed, and then must not be empty either.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn replay(name: &str, harness: kite_fuzz::Harness, dir: &Path) -> usize {
    let inputs = files(dir);
    for f in &inputs {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let r = std::panic::catch_unwind(|| harness(&data));
        assert!(r.is_ok(), "{name}: {} fails the harness", f.display());
    }
    inputs.len()
}

#[test]
fn every_target_has_a_corpus_and_it_passes() {
    let mut missing = Vec::new();
    let mut total = 0;
    for (name, harness) in kite_fuzz::TARGETS {
        let n = replay(name, *harness, &fuzz_dir().join("corpus").join(name));
        if n == 0 {
            missing.push(*name);
        }
        total += n;
    }
    assert!(missing.is_empty(), "targets with no corpus: {missing:?}");
    assert!(total >= kite_fuzz::TARGETS.len());
}

#[test]
fn every_fixed_crash_stays_fixed() {
    let root = fuzz_dir().join("regressions");
    for (name, harness) in kite_fuzz::TARGETS {
        let dir = root.join(name);
        if dir.exists() {
            let n = replay(name, *harness, &dir);
            assert!(n > 0, "{}: empty regressions directory", dir.display());
        }
    }
    // Every regressions directory belongs to a target that exists.
    for d in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let n = d.file_name().to_string_lossy().into_owned();
        assert!(
            kite_fuzz::target(&n).is_some(),
            "regressions for unknown target {n}"
        );
    }
}

#[test]
fn every_target_has_a_libfuzzer_entry() {
    for (name, _) in kite_fuzz::TARGETS {
        let f = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        assert!(
            text.contains(&format!("kite_fuzz::{name}(data)")),
            "{} does not call kite_fuzz::{name}",
            f.display()
        );
    }
}

/// xorshift64*, for inputs no corpus holds yet.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_inputs_pass_every_harness() {
    for (name, harness) in kite_fuzz::TARGETS {
        for seed in 0..16u64 {
            let data = noise(seed, 64 + 97 * seed as usize);
            let r = std::panic::catch_unwind(|| harness(&data));
            assert!(r.is_ok(), "{name}: random input {seed} fails the harness");
        }
        // The empty input is a valid (empty) program too.
        harness(&[]);
    }
}
