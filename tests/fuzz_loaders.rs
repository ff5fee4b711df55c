//! Mutation fuzzing of every loader a user can point at a file: saved sessions of the three
//! models (reference world, default model, DIAMOND) and their `.nacre` envelope, the default
//! model's `config.json` and `model.safetensors`, DIAMOND's `.pt` and safetensors checkpoints,
//! dataset manifests and shards, and recordings (`actions.json`, `start.nacre`, WAV sound).
//!
//! Each target starts from a valid input (checked to load first, so a broken base cannot make
//! the target pass by refusing everything) and applies 1 to 3 random mutations: bit flips,
//! byte changes, truncation, insertion, removal and duplication of byte ranges, and, inside
//! JSON text (a whole JSON file, or the JSON header of a safetensors file), numbers replaced by
//! edge values (huge, zero, negative, `NaN`, `1e999`, `null`, past `u64`). Every mutated input
//! must give `Ok` or an `Err`; where a file was read, the error must name it. A panic (caught
//! with `catch_unwind`) or an error that does not name the file fails the test with the
//! mutations, shrunk by proptest to the fewest that still fail, and the input is written to
//! the system's temporary folder.
//!
//! Runs are seeded (the same cases on every run) and bounded: `NACRE_FUZZ_CASES` cases per
//! target, 64 by default, so the whole file runs in well under a minute in a debug build. For a
//! long run by hand, raise it and change the seed (`NACRE_FUZZ_SEED`, any text); keep the debug
//! build, whose overflow checks turn silent wrap-arounds into panics the run can find.
//! `--nocapture` prints each target's cases, how many changed the input and how many mutated
//! inputs still loaded:
//!
//! ```text
//! NACRE_FUZZ_CASES=3000 NACRE_FUZZ_SEED=7 cargo test --no-default-features \
//!     --test fuzz_loaders -- --nocapture
//! ```

use std::cell::Cell;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use bevy_nacre::dataset::{DatagenOptions, Dataset, MANIFEST_FILE, Manifest, check_dataset};
use bevy_nacre::default_model::{self, Config, DefaultModel, GenerationConfig};
use bevy_nacre::diamond::{DiamondOptions, DiamondWorldModel, load_checkpoint};
use bevy_nacre::recording::{self, ActionLog, LoggedStep, Recorder, ReplayOptions};
use bevy_nacre::reference::ReferenceWorld;
use bevy_nacre::session_file::{self, SessionHeader};
use bevy_nacre::world_model::{Prompt, StepInput, WorldModel};
use candle_core::Device;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use sha2::{Digest, Sha256};
use temp_dir::TempDir;

#[path = "common/temp_dir.rs"]
mod temp_dir;

/// The small DIAMOND checkpoint the parity tests use (self-attention included).
const DIAMOND_FIXTURE: &str = "tests/fixtures/diamond/tiny_attn.pt";
/// The shipped model's config: a real `config.json` with a stored channel layout.
const SHIPPED_CONFIG: &str = "assets/models/default/config.json";

// ---------------------------------------------------------------------------------------------
// Mutations.

/// One change to an input.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flips bit `.1` of one byte.
    FlipBit(Index, u8),
    /// Sets one byte.
    SetByte(Index, u8),
    /// Cuts the input after a prefix.
    Truncate(Index),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Removes a range (start, length).
    Remove(Index, Index),
    /// Copies a range (start, length) to another place, inserted there.
    Duplicate(Index, Index, Index),
    /// Replaces one number of the input's JSON text with an edge value.
    Number(Index, &'static str),
}

/// Edge values a number in a JSON file is replaced with.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "-0.5",
    "1.5",
    "1e999",
    "-1e999",
    "1e308",
    "NaN",
    "null",
    "\"7\"",
    "[]",
    "65536",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
];

/// Longest range removed or duplicated at once.
const MAX_RANGE: usize = 4096;

/// Changes to bytes anywhere in the input.
fn byte_mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(i, n, to)| Mutation::Duplicate(i, n, to)),
    ]
    .boxed()
}

/// A number of the JSON text replaced by one of [`NUMBERS`].
fn number_mutation() -> BoxedStrategy<Mutation> {
    (any::<Index>(), prop::sample::select(NUMBERS))
        .prop_map(|(i, v)| Mutation::Number(i, v))
        .boxed()
}

/// One to three mutations; with JSON text, number edits are as likely as byte changes.
fn mutations(json: bool) -> BoxedStrategy<Vec<Mutation>> {
    let one = if json {
        prop_oneof![byte_mutation(), number_mutation()].boxed()
    } else {
        byte_mutation()
    };
    prop::collection::vec(one, 1..4).boxed()
}

/// Where an input's JSON text is (for number edits).
type JsonRegion = fn(&[u8]) -> Range<usize>;

/// The whole input is JSON.
fn whole(bytes: &[u8]) -> Range<usize> {
    0..bytes.len()
}

/// The header of a safetensors file: `n` bytes of JSON after the 8-byte length `n`.
fn safetensors_header(bytes: &[u8]) -> Range<usize> {
    let n = bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    8.min(bytes.len())..(8u64.saturating_add(n)).min(bytes.len() as u64) as usize
}

/// Spans of the numbers outside strings in JSON text.
fn number_spans(text: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let (mut i, mut in_string) = (0, false);
    while i < text.len() {
        let c = text[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
        } else if c == b'"' {
            in_string = true;
            i += 1;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < text.len()
                && matches!(text[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            spans.push(start..i);
        } else {
            i += 1;
        }
    }
    spans
}

/// Applies `m` to `bytes`; positions scale to the current length, so any mutation applies to
/// any input (one that has nothing to change leaves it as it is).
fn apply(bytes: &mut Vec<u8>, m: &Mutation, json: Option<JsonRegion>) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << (bit % 8),
        Mutation::SetByte(i, v) if len > 0 => bytes[i.index(len)] = *v,
        Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Mutation::Insert(i, v) => {
            let at = i.index(len + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Remove(i, n) if len > 0 => {
            let at = i.index(len);
            let n = n.index((len - at).min(MAX_RANGE)) + 1;
            bytes.drain(at..at + n);
        }
        Mutation::Duplicate(i, n, to) if len > 0 => {
            let at = i.index(len);
            let n = n.index((len - at).min(MAX_RANGE)) + 1;
            let copy = bytes[at..at + n].to_vec();
            let to = to.index(len + 1);
            bytes.splice(to..to, copy);
        }
        Mutation::Number(i, value) => {
            let Some(region) = json.map(|f| f(bytes)) else {
                return;
            };
            let spans = number_spans(&bytes[region.clone()]);
            if !spans.is_empty() {
                let span = &spans[i.index(spans.len())];
                let range = region.start + span.start..region.start + span.end;
                bytes.splice(range, value.bytes());
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// Cases per target: `NACRE_FUZZ_CASES`, else 64.
fn cases() -> u32 {
    std::env::var("NACRE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// A generator seeded by the target's name (and `NACRE_FUZZ_SEED`), so every run tries the same
/// cases and each target its own.
fn rng(target: &str) -> TestRng {
    let seed = std::env::var("NACRE_FUZZ_SEED").unwrap_or_default();
    let digest = Sha256::digest(format!("{target}/{seed}").as_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &digest)
}

thread_local! {
    /// Loaders' `Ok` answers on this thread, so a target can say how many mutated inputs got
    /// past the first checks (a target whose inputs are all refused at once tests little).
    static ACCEPTED: Cell<u32> = const { Cell::new(0) };
}

/// Counts a loader's `Ok` answer.
fn accepted() {
    ACCEPTED.with(|a| a.set(a.get() + 1));
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs `check` on mutated copies of `base`. `check` returns `Err` when the loader's answer is
/// wrong (an error that does not name the file, a damaged file accepted); a panic inside it is
/// caught. The first failure is shrunk to its fewest mutations and fails the test.
fn fuzz(
    target: &str,
    base: &[u8],
    json: Option<JsonRegion>,
    check: &dyn Fn(&[u8]) -> Result<(), String>,
) {
    // The valid input must load, or refusing everything would pass.
    let before = ACCEPTED.with(Cell::get);
    check(base).unwrap_or_else(|e| panic!("{target}: the unmutated input fails: {e}"));
    assert!(
        ACCEPTED.with(Cell::get) > before,
        "{target}: the unmutated input is refused"
    );
    let cases = cases();
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(target));
    let changed = Cell::new(0u32);
    let loaded = Cell::new(0u32);
    let started = std::time::Instant::now();
    let result = runner.run(&mutations(json.is_some()), |muts| {
        let mut bytes = base.to_vec();
        for m in &muts {
            apply(&mut bytes, m, json);
        }
        if bytes != base {
            changed.set(changed.get() + 1);
        }
        let before = ACCEPTED.with(Cell::get);
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&bytes)));
        if ACCEPTED.with(Cell::get) != before {
            loaded.set(loaded.get() + 1);
        }
        let why = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => why,
            Err(p) => format!("panicked: {}", panic_message(p.as_ref())),
        };
        let saved = std::env::temp_dir().join(format!("nacre-fuzz-{target}.bin"));
        let _ = std::fs::write(&saved, &bytes);
        Err(TestCaseError::fail(format!(
            "{why}\n  mutations of the valid input: {muts:?}\n  input ({} bytes) written to {}",
            bytes.len(),
            saved.display()
        )))
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    eprintln!(
        "{target}: {cases} cases ({} changed the input, {} loaded) in {:.1} s",
        changed.get(),
        loaded.get(),
        started.elapsed().as_secs_f64()
    );
}

/// `Ok` when `result` is `Ok` or an error whose message contains `needle` (a file's path).
fn names<T>(result: &bevy_nacre::Result<T>, needle: &Path) -> Result<(), String> {
    match result {
        Err(e) if !e.to_string().contains(&needle.display().to_string()) => {
            Err(format!("the error does not name {}: {e}", needle.display()))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Models and their saved sessions.

/// An input that moves along one of the first three channels (which one by `k`).
fn walk(model: &dyn WorldModel, k: usize) -> StepInput {
    let spec = model.spec();
    let mut input = StepInput {
        action: spec.neutral_action(),
        controls: spec.default_controls(),
    };
    if let Some(v) = input.action.values.get_mut(k % 3) {
        *v = 1.0;
    }
    input
}

/// The state a session of `model` saves after a few steps.
fn saved_state(model: &dyn WorldModel) -> Vec<u8> {
    let mut session = model.start(&Prompt::seeded(5)).unwrap();
    for k in 0..3 {
        session.step(&walk(model, k)).unwrap();
    }
    session.save().unwrap()
}

/// Restores `state`; a restored session must also step and save again (a damaged state that is
/// accepted must not panic later).
fn restore_and_step(model: &dyn WorldModel, state: &[u8]) -> Result<(), String> {
    if let Ok(mut session) = model.restore(state) {
        accepted();
        let _ = session.step(&walk(model, 0));
        let _ = session.save();
    }
    Ok(())
}

/// A small reference world, so its steps are quick.
fn reference_world() -> ReferenceWorld {
    ReferenceWorld::new(32, 24)
}

/// A tiny default model with random weights, taking its start frames from the reference world.
fn tiny_default_model() -> DefaultModel {
    let cfg = Config::tiny();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let nets = default_model::network::Networks::new(&cfg, vb).unwrap();
    DefaultModel::new(cfg, GenerationConfig::default(), nets, Device::Cpu)
        .unwrap()
        .with_start_frames(bevy_nacre::reference::start_frames)
}

/// The tiny default model as a folder (`config.json`, `model.safetensors`).
fn tiny_default_model_folder(dir: &Path) {
    let cfg = Config::tiny();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    default_model::network::Networks::new(&cfg, vb).unwrap();
    default_model::weights::save_varmap(&varmap, &dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.to_json(&GenerationConfig::default()),
    )
    .unwrap();
}

/// DIAMOND at 16×16 pixels, so its steps are quick.
fn diamond_options() -> DiamondOptions {
    DiamondOptions {
        image_size: 16,
        ..DiamondOptions::default()
    }
}

#[test]
fn reference_world_sessions() {
    let world = reference_world();
    let state = saved_state(&world);
    fuzz("reference_session", &state, None, &|bytes| {
        restore_and_step(&world, bytes)
    });
}

#[test]
fn default_model_sessions() {
    let model = tiny_default_model();
    let state = saved_state(&model);
    fuzz("default_model_session", &state, None, &|bytes| {
        restore_and_step(&model, bytes)
    });
}

#[test]
fn diamond_sessions() {
    let model = DiamondWorldModel::load(DIAMOND_FIXTURE, &Device::Cpu, diamond_options()).unwrap();
    let state = saved_state(&model);
    fuzz("diamond_session", &state, None, &|bytes| {
        restore_and_step(&model, bytes)
    });
}

/// A saved-session header naming `model`.
fn header_for(model: &dyn WorldModel) -> SessionHeader {
    SessionHeader {
        model: model.spec().name.clone(),
        model_version: model.spec().version.clone(),
        frame_index: 3,
        controls: model.spec().default_controls(),
    }
}

#[test]
fn session_envelopes() {
    let world = reference_world();
    let base = session_file::encode(&header_for(&world), &saved_state(&world));
    fuzz("session_envelope", &base, None, &|bytes| {
        match session_file::decode(bytes) {
            // A version changed to 1 (no checksum) leaves the checksum in front of the state,
            // which the model must then refuse.
            Ok(saved) if bytes != base && bytes[8..12] == 1u32.to_le_bytes() => {
                match world.restore(&saved.state) {
                    Ok(_) => Err("a damaged saved session was restored".into()),
                    Err(_) => Ok(()),
                }
            }
            // The checksum refuses every other changed file, with the error saved sessions use.
            Ok(_) if bytes != base => Err("a damaged saved session was accepted".into()),
            Err(e) if !matches!(e, bevy_nacre::Error::BadSessionState(_)) => {
                Err(format!("not a saved-session error: {e:?}"))
            }
            Ok(saved) => {
                accepted();
                restore_and_step(&world, &saved.state)
            }
            Err(_) => Ok(()),
        }
    });
}

#[test]
fn version_1_session_envelopes() {
    // Files from before the checksum: no integrity check, so whatever decodes is restored.
    let world = reference_world();
    let json = serde_json::to_vec(&header_for(&world)).unwrap();
    let mut base = b"NACRESES".to_vec();
    base.extend_from_slice(&1u32.to_le_bytes());
    base.extend_from_slice(&(json.len() as u32).to_le_bytes());
    base.extend_from_slice(&json);
    base.extend_from_slice(&saved_state(&world));
    fuzz(
        "session_envelope_v1",
        &base,
        None,
        &|bytes| match session_file::decode(bytes) {
            Ok(saved) => {
                let _ = saved.check_model(world.spec());
                restore_and_step(&world, &saved.state)
            }
            Err(_) => Ok(()),
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The default model's files.

#[test]
fn default_model_configs() {
    // The shipped config: parsed and checked, then its networks listed (without weights).
    let tmp = TempDir::new("fuzz", "config");
    let path = tmp.0.join("config.json");
    let base = std::fs::read(SHIPPED_CONFIG).unwrap();
    fuzz("default_model_config", &base, Some(whole), &|bytes| {
        std::fs::write(&path, bytes).unwrap();
        let loaded = Config::load(&path);
        names(&loaded, &path)?;
        if let Ok((cfg, _)) = loaded {
            accepted();
            let _ = default_model::weights::expected_tensors(&cfg);
        }
        Ok(())
    });
}

#[test]
fn default_model_folders_with_a_damaged_config() {
    let tmp = TempDir::new("fuzz", "folder-config");
    tiny_default_model_folder(&tmp.0);
    let path = tmp.0.join("config.json");
    let base = std::fs::read(&path).unwrap();
    let weights = tmp.0.join("model.safetensors");
    fuzz(
        "default_model_folder_config",
        &base,
        Some(whole),
        &|bytes| {
            std::fs::write(&path, bytes).unwrap();
            match default_model::load(&tmp.0, &Device::Cpu) {
                Ok(model) => {
                    accepted();
                    let model = model.with_start_frames(bevy_nacre::reference::start_frames);
                    if let Ok(mut s) = model.start(&Prompt::seeded(1)) {
                        let _ = s.step(&walk(&model, 0));
                    }
                    Ok(())
                }
                Err(e) => {
                    let m = e.to_string();
                    let named = [&path, &weights]
                        .iter()
                        .any(|p| m.contains(&p.display().to_string()));
                    if named {
                        Ok(())
                    } else {
                        Err(format!("the error names neither file: {m}"))
                    }
                }
            }
        },
    );
}

#[test]
fn default_model_weights() {
    let tmp = TempDir::new("fuzz", "weights");
    tiny_default_model_folder(&tmp.0);
    let path = tmp.0.join("model.safetensors");
    let base = std::fs::read(&path).unwrap();
    fuzz(
        "default_model_weights",
        &base,
        Some(safetensors_header),
        &|bytes| {
            std::fs::write(&path, bytes).unwrap();
            let loaded = default_model::load(&tmp.0, &Device::Cpu);
            if loaded.is_ok() {
                accepted();
            }
            names(&loaded, &path)
        },
    );
}

// ---------------------------------------------------------------------------------------------
// DIAMOND checkpoints.

/// Loads a checkpoint and builds the model from it; errors must name the file.
fn load_diamond(path: &Path) -> Result<(), String> {
    let ckpt = load_checkpoint(path, &Device::Cpu, 0.5, 0.3);
    names(&ckpt, path)?;
    if let Ok(ckpt) = ckpt {
        accepted();
        let model = DiamondWorldModel::from_checkpoint(&ckpt, &Device::Cpu, diamond_options());
        names(&model, path)?;
    }
    Ok(())
}

#[test]
fn diamond_pytorch_checkpoints() {
    let tmp = TempDir::new("fuzz", "diamond-pt");
    let path = tmp.0.join("agent.pt");
    let base = std::fs::read(DIAMOND_FIXTURE).unwrap();
    fuzz("diamond_pt", &base, None, &|bytes| {
        std::fs::write(&path, bytes).unwrap();
        load_diamond(&path)
    });
}

#[test]
fn diamond_pytorch_pickles() {
    // The archive's checksums refuse most changes to its entries; rebuilding the archive around
    // a mutated `data.pkl` reaches the pickle reader itself.
    let tmp = TempDir::new("fuzz", "diamond-pkl");
    let path = tmp.0.join("agent.pt");
    let entries = zip::read(&std::fs::read(DIAMOND_FIXTURE).unwrap());
    let pickle = entries
        .iter()
        .position(|(name, _)| name.ends_with("data.pkl"))
        .expect("the fixture has a data.pkl");
    let base = entries[pickle].1.clone();
    fuzz("diamond_pickle", &base, None, &|bytes| {
        let mut entries = entries.clone();
        entries[pickle].1 = bytes.to_vec();
        std::fs::write(&path, zip::write(&entries)).unwrap();
        load_diamond(&path)
    });
}

#[test]
fn diamond_safetensors_checkpoints() {
    let tmp = TempDir::new("fuzz", "diamond-st");
    let path = tmp.0.join("agent.safetensors");
    let ckpt = load_checkpoint(DIAMOND_FIXTURE, &Device::Cpu, 0.5, 0.3).unwrap();
    let tensors: std::collections::HashMap<String, candle_core::Tensor> = ckpt
        .tensors
        .iter()
        .map(|(k, v)| (format!("{}{k}", ckpt.prefix), v.clone()))
        .collect();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let base = std::fs::read(&path).unwrap();
    fuzz(
        "diamond_safetensors",
        &base,
        Some(safetensors_header),
        &|bytes| {
            std::fs::write(&path, bytes).unwrap();
            load_diamond(&path)
        },
    );
}

/// Reading and writing zip archives of stored (uncompressed) entries, as `torch.save` makes
/// them, so a test can change one entry and keep the archive's checksums right.
mod zip {
    /// A little-endian `u16` at `at`.
    fn u16_at(b: &[u8], at: usize) -> usize {
        u16::from_le_bytes([b[at], b[at + 1]]) as usize
    }

    /// A little-endian `u32` at `at`.
    fn u32_at(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }

    /// The entries (name, contents) of a valid archive of stored entries.
    pub fn read(b: &[u8]) -> Vec<(String, Vec<u8>)> {
        let end = (0..=b.len() - 22)
            .rev()
            .find(|&i| b[i..i + 4] == *b"PK\x05\x06")
            .expect("end of central directory");
        let (count, mut at) = (u16_at(b, end + 10), u32_at(b, end + 16));
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            assert_eq!(&b[at..at + 4], b"PK\x01\x02");
            assert_eq!(u16_at(b, at + 10), 0, "stored entries only");
            let size = u32_at(b, at + 20);
            let (name_len, extra, comment) =
                (u16_at(b, at + 28), u16_at(b, at + 30), u16_at(b, at + 32));
            let name = String::from_utf8(b[at + 46..at + 46 + name_len].to_vec()).unwrap();
            let local = u32_at(b, at + 42);
            let data = local + 30 + u16_at(b, local + 26) + u16_at(b, local + 28);
            out.push((name, b[data..data + size].to_vec()));
            at += 46 + name_len + extra + comment;
        }
        out
    }

    /// The CRC-32 a zip entry's header carries.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    /// An archive of `entries`, stored, with their CRC-32s.
    pub fn write(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in entries {
            let offset = out.len() as u32;
            let (crc, size) = (crc32(data), data.len() as u32);
            let common = |v: &mut Vec<u8>| {
                v.extend_from_slice(&20u16.to_le_bytes()); // version needed
                v.extend_from_slice(&[0; 4]); // flags, method: stored
                v.extend_from_slice(&[0; 4]); // time, date
                v.extend_from_slice(&crc.to_le_bytes());
                v.extend_from_slice(&size.to_le_bytes());
                v.extend_from_slice(&size.to_le_bytes());
                v.extend_from_slice(&(name.len() as u16).to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes()); // extra
            };
            out.extend_from_slice(b"PK\x03\x04");
            common(&mut out);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&20u16.to_le_bytes()); // version made by
            common(&mut central);
            central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
            central.extend_from_slice(&[0; 4]); // external attributes
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let start = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]); // disk numbers
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Datasets.

/// The options of the tiny dataset (also those a resumed `nacre datagen` runs with).
fn dataset_options(dir: &Path) -> DatagenOptions {
    let mut o = DatagenOptions::new(dir, 2, 3, 16, 12, 9);
    o.episodes_per_shard = Some(1);
    o.threads = 1;
    o
}

/// A tiny dataset (two shards of one episode of three frames), as `(file name, bytes)`.
fn tiny_dataset(name: &str) -> Vec<(String, Vec<u8>)> {
    let tmp = TempDir::new("fuzz", name);
    bevy_nacre::dataset::generate(&dataset_options(&tmp.0), &|_, _| {}).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Opens, reads, checks and resumes the dataset in `dir`; every error and problem must name a
/// file inside it.
fn use_dataset(dir: &Path) -> Result<(), String> {
    let manifest = dir.join(MANIFEST_FILE);
    let opened = Dataset::open(dir);
    names(&opened, &manifest)?;
    if let Ok(ds) = opened {
        let mut all = true;
        for episode in ds.episodes() {
            names(&episode, dir)?;
            all &= episode.is_ok();
        }
        if all {
            accepted();
        }
    }
    for problem in check_dataset(dir).problems {
        if !problem.file.starts_with(dir) {
            return Err(format!("a problem outside the dataset: {problem}"));
        }
    }
    // `nacre datagen` run again on the folder reads the manifest to resume.
    names(
        &bevy_nacre::dataset::generate(&dataset_options(dir), &|_, _| {}),
        dir,
    )
}

/// Writes `files` into a fresh `dir`, `name` replaced by `bytes`.
fn lay_out(dir: &Path, files: &[(String, Vec<u8>)], name: &str, bytes: &[u8]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (n, b) in files {
        std::fs::write(dir.join(n), if n == name { bytes } else { b }).unwrap();
    }
}

#[test]
fn dataset_manifests() {
    let files = tiny_dataset("manifest-base");
    let base = files
        .iter()
        .find(|(n, _)| n == MANIFEST_FILE)
        .unwrap()
        .1
        .clone();
    let tmp = TempDir::new("fuzz", "manifest");
    let dir = tmp.0.join("data");
    fuzz("dataset_manifest", &base, Some(whole), &|bytes| {
        lay_out(&dir, &files, MANIFEST_FILE, bytes);
        use_dataset(&dir)
    });
}

#[test]
fn dataset_shards() {
    let files = tiny_dataset("shard-base");
    let shard = bevy_nacre::dataset::shard_file_name(0);
    let base = files.iter().find(|(n, _)| *n == shard).unwrap().1.clone();
    let tmp = TempDir::new("fuzz", "shard");
    let dir = tmp.0.join("data");
    fuzz("dataset_shard", &base, Some(safetensors_header), &|bytes| {
        // As damaged on disk: the manifest's size and checksum no longer match.
        lay_out(&dir, &files, &shard, bytes);
        let opened = Dataset::open(&dir).map_err(|e| e.to_string())?;
        let first = opened.shards().next().unwrap();
        if bytes != base && first.is_ok() {
            return Err("a shard that does not match its checksum was read".into());
        }
        use_dataset(&dir)?;
        // As written so: the manifest lists the mutated file, so the shard reader parses it.
        lay_out(&dir, &files, &shard, bytes);
        let mut m = Manifest::read(&dir).map_err(|e| e.to_string())?;
        m.shards[0].bytes = bytes.len() as u64;
        m.shards[0].sha256 = bevy_nacre::dataset::sha256_hex(bytes);
        m.write(&dir).map_err(|e| e.to_string())?;
        use_dataset(&dir)
    });
}

// ---------------------------------------------------------------------------------------------
// Recordings.

/// A recording of the reference world: `start.nacre` and `actions.json` of four steps.
fn tiny_recording(dir: &Path, world: &ReferenceWorld) {
    std::fs::create_dir_all(dir).unwrap();
    let mut session = world.start(&Prompt::seeded(3)).unwrap();
    session.step(&walk(world, 0)).unwrap();
    let header = SessionHeader {
        frame_index: session.frame_index(),
        ..header_for(world)
    };
    std::fs::write(
        dir.join(recording::START_SESSION),
        session_file::encode(&header, &session.save().unwrap()),
    )
    .unwrap();
    let mut log = ActionLog::new(world.spec());
    log.start_session = Some(recording::START_SESSION.into());
    log.first_index = session.frame_index();
    for k in 0..4 {
        let input = walk(world, k);
        log.steps.push(LoggedStep {
            index: log.first_index + k as u64,
            action: input.action.values,
            controls: input.controls.values,
        });
    }
    std::fs::write(
        dir.join(recording::ACTION_LOG),
        serde_json::to_vec_pretty(&log).unwrap(),
    )
    .unwrap();
}

/// Loads the log and replays the recording in `dir` (what `nacre export` does); errors must
/// name a file of the recording.
fn replay_recording(world: &ReferenceWorld, dir: &Path, out: &Path) -> Result<(), String> {
    let log = dir.join(recording::ACTION_LOG);
    names(&ActionLog::load(&log), &log)?;
    let options = ReplayOptions {
        frames: false,
        wav: true,
        gif: false,
    };
    let replayed = recording::replay(world, dir, out, &options);
    if replayed.is_ok() {
        accepted();
    }
    names(&replayed, dir)
}

#[test]
fn recording_action_logs() {
    let world = reference_world();
    let tmp = TempDir::new("fuzz", "actions");
    let rec = tmp.0.join("rec");
    tiny_recording(&rec, &world);
    let path = rec.join(recording::ACTION_LOG);
    let base = std::fs::read(&path).unwrap();
    let out = tmp.0.join("out");
    fuzz("action_log", &base, Some(whole), &|bytes| {
        std::fs::write(&path, bytes).unwrap();
        replay_recording(&world, &rec, &out)
    });
}

#[test]
fn recording_start_sessions() {
    let world = reference_world();
    let tmp = TempDir::new("fuzz", "start");
    let rec = tmp.0.join("rec");
    tiny_recording(&rec, &world);
    let path = rec.join(recording::START_SESSION);
    let base = std::fs::read(&path).unwrap();
    let out = tmp.0.join("out");
    fuzz("recording_start_session", &base, None, &|bytes| {
        std::fs::write(&path, bytes).unwrap();
        let result = recording::replay(&world, &rec, &out, &ReplayOptions::default());
        if bytes != base && result.is_ok() {
            return Err("a damaged start session was replayed".into());
        }
        if result.is_ok() {
            accepted();
        }
        names(&result, &path)
    });
}

#[test]
fn recording_wav_files() {
    let samples: Vec<f32> = (0..800).map(|i| (i as f32 * 0.07).sin() * 0.4).collect();
    let base = recording::wav_bytes(&samples, 16_000, 1);
    fuzz("wav", &base, None, &|bytes| {
        // Bytes, not a file: any error will do, but what is read must come from the input.
        let read = recording::read_wav(bytes);
        if read.is_ok() {
            accepted();
        }
        if let Ok(wav) = read
            && wav.samples.len() * 2 > bytes.len()
        {
            return Err(format!(
                "{} samples read from {} bytes",
                wav.samples.len(),
                bytes.len()
            ));
        }
        Ok(())
    });
}

#[test]
fn recording_journals() {
    // The journal of a recording whose program was killed: finished by `recording::recover`
    // (what `nacre export` does with it), then replayed.
    let world = reference_world();
    let tmp = TempDir::new("fuzz", "journal");
    let rec = tmp.0.join("rec");
    let recorder = Recorder::create(&rec, world.spec()).unwrap();
    let mut session = world.start(&Prompt::seeded(3)).unwrap();
    let header = SessionHeader {
        frame_index: session.frame_index(),
        ..header_for(&world)
    };
    recorder.set_start(session_file::encode(&header, &session.save().unwrap()));
    for k in 0..4 {
        let input = walk(&world, k);
        let index = session.frame_index();
        let out = session.step(&input).unwrap();
        recorder.add_step(index, &input, &out.audio.samples);
    }
    recorder.flush().unwrap();
    let path = rec.join(recording::JOURNAL);
    let base = std::fs::read(&path).unwrap();
    drop(recorder);
    let out = tmp.0.join("out");
    fuzz("recording_journal", &base, None, &|bytes| {
        let _ = std::fs::remove_file(rec.join(recording::ACTION_LOG));
        std::fs::write(&path, bytes).unwrap();
        let recovered = recording::recover(&rec);
        names(&recovered, &path)?;
        if recovered.is_ok() {
            // A recovered log holds only whole, checksummed steps: it replays.
            replay_recording(&world, &rec, &out)?;
        }
        Ok(())
    });
}
