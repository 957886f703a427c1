//! The fuzz targets (`fhir_ws_tests::fuzz`) on stable, as CI runs them: every committed
//! seed (`fuzz/seeds/<target>/`), then random mutations of them for a bounded number of
//! runs per target. Long runs are
//! libFuzzer's (`fuzz/`, the guide, docs/src/security.md).

use std::path::Path;

/// Mutated inputs per target on every test run (a few seconds in all).
const MUTATIONS: usize = 3_000;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
        .collect();
    inputs.sort();
    inputs
}

/// One random edit: flip, insert, delete or duplicate bytes, or splice two inputs.
fn mutate(rng: &mut fastrand::Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..4) {
        let at = rng.usize(0..=out.len());
        match rng.u8(0..5) {
            0 if at < out.len() => out[at] ^= 1 << rng.u8(0..8),
            1 => out.insert(at, rng.u8(..)),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 if at < out.len() => {
                let end = rng.usize(at..=out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => {
                let from = rng.usize(0..=other.len());
                out.splice(at.., other[from..].iter().copied());
            }
        }
    }
    out
}

#[test]
fn every_fuzz_target_holds_on_its_corpus_and_random_mutations() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for (name, target) in fhir_ws_tests::fuzz::TARGETS {
        let inputs = corpus(name);
        assert!(!inputs.is_empty(), "{name}: no seeds");
        for input in &inputs {
            target(input);
        }
        for _ in 0..MUTATIONS {
            let input = &inputs[rng.usize(0..inputs.len())];
            let other = &inputs[rng.usize(0..inputs.len())];
            target(&mutate(&mut rng, input, other));
        }
    }
}

/// Every route of `http_body` reaches its handler's checks: the instance routes name a
/// subscription that exists, and `$status`/`$events` go to the function that serves them.
/// The seeds and their mutations get answers other than 404 (not found, or no such route)
/// for most inputs, rather than fuzzing a "not found" over and over.
#[test]
fn the_http_body_target_reaches_past_the_subscription_lookup() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let inputs = corpus("http_body");
    let mut past_lookup = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    let mut record = |input: &[u8]| {
        if let Some((route, status)) = fhir_ws_tests::fuzz::http_answer(input) {
            let (answered, found) = past_lookup.entry(route).or_default();
            *answered += 1;
            *found += usize::from(status != 404);
        }
    };
    for input in &inputs {
        record(input);
    }
    for _ in 0..300 {
        let input = &inputs[rng.usize(0..inputs.len())];
        let other = &inputs[rng.usize(0..inputs.len())];
        record(&mutate(&mut rng, input, other));
    }
    assert_eq!(past_lookup.len(), 9, "every route had inputs: {past_lookup:?}");
    for (route, (answered, found)) in &past_lookup {
        assert!(*found * 2 > *answered, "{route}: only {found} of {answered} answers got past the lookup");
    }
}
