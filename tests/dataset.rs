//! Datasets: round trip, corruption reported with the file name, resumable generation, and the
//! step-by-step `DatasetWriter` (the
//! `nacre datagen` / `nacre dataset-check` commands are tested in `cli.rs`).

use std::path::{Path, PathBuf};

use bevy_nacre::dataset::{
    CapturedStep, DatagenOptions, Dataset, DatasetWriter, GeneratorInfo, MANIFEST_FILE, Manifest,
    ShardData, check_dataset, generate, record_episode, shard_file_name,
};
use bevy_nacre::frame::Frame;
use bevy_nacre::reference::ReferenceWorld;
use bevy_nacre::reference::trajectory::TrajectoryConfig;
use bevy_nacre::world_model::WorldModel;

/// A fresh, empty folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("nacre-dataset-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn options(dir: &Path) -> DatagenOptions {
    let mut o = DatagenOptions::new(dir, 5, 12, 16, 12, 77);
    o.episodes_per_shard = Some(2);
    o.threads = 2;
    o
}

fn no_progress(_: u64, _: u64) {}

fn shard_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let m = Manifest::read(dir).unwrap();
    m.shards
        .iter()
        .map(|s| (s.file.clone(), std::fs::read(dir.join(&s.file)).unwrap()))
        .collect()
}

#[test]
fn round_trip_and_streaming_read() {
    let tmp = TempDir::new("roundtrip");
    let opts = options(tmp.path());
    let report = generate(&opts, &no_progress).unwrap();
    assert!(report.complete);
    assert_eq!(report.shards_total, 3);
    assert_eq!(report.shards_written, 3);
    assert_eq!(report.frames_written, 5 * 12);

    let ds = Dataset::open(tmp.path()).unwrap();
    let m = ds.manifest();
    assert_eq!(m.shards.len(), 3);
    assert_eq!(m.shards[2].episodes, 1);
    assert!(m.complete);
    assert_eq!(
        (m.dims.width, m.dims.height, m.dims.audio_samples),
        (16, 12, 800)
    );

    // Streaming episode by episode gives exactly what recording the episode directly gives.
    let world = ReferenceWorld::new(16, 12);
    let config = TrajectoryConfig {
        director_changes_per_minute: opts.director_changes_per_minute,
        random_start_controls: true,
        ..TrajectoryConfig::default()
    };
    let mut seen = 0;
    for (i, ep) in ds.episodes().enumerate() {
        let ep = ep.unwrap();
        assert_eq!(ep.index, i as u64);
        assert_eq!(ep.data.len(), 12);
        assert_eq!(ep.data.frame, (0..12).collect::<Vec<i64>>());
        let direct = record_episode(&world, 77, i as u64, 12, &config, &|_| {}).unwrap();
        assert!(
            ep.data == direct,
            "episode {i} differs from a direct recording"
        );
        seen += 1;
    }
    assert_eq!(seen, 5);
    // Shards load one at a time and hold whole episodes.
    let sizes: Vec<usize> = ds.shards().map(|s| s.unwrap().episodes().len()).collect();
    assert_eq!(sizes, vec![2, 2, 1]);

    let check = check_dataset(tmp.path());
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!((check.shards_ok, check.episodes, check.frames), (3, 5, 60));

    // The data is not trivial: frames vary and sound is not silent.
    let first = ds.episodes().next().unwrap().unwrap();
    let fb = first.data.dims.frame_bytes();
    assert_ne!(first.data.frames[..fb], first.data.frames[fb * 11..fb * 12]);
    assert!(first.data.audio.iter().any(|&s| s.unsigned_abs() > 50));
}

#[test]
fn generation_is_deterministic_across_threads_and_shard_order() {
    let a = TempDir::new("det-a");
    let b = TempDir::new("det-b");
    let mut oa = options(a.path());
    oa.threads = 1;
    let mut ob = options(b.path());
    ob.threads = 3;
    generate(&oa, &no_progress).unwrap();
    generate(&ob, &no_progress).unwrap();
    assert_eq!(shard_bytes(a.path()), shard_bytes(b.path()));
    assert_eq!(
        Manifest::read(a.path()).unwrap(),
        Manifest::read(b.path()).unwrap()
    );
}

#[test]
fn a_flipped_byte_is_reported_with_the_file_name() {
    let tmp = TempDir::new("flip");
    generate(&options(tmp.path()), &no_progress).unwrap();
    let victim = tmp.path().join(shard_file_name(1));
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let report = check_dataset(tmp.path());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.file, victim);
    assert!(p.to_string().contains("shard-00001.safetensors"), "{p}");
    assert!(p.message.contains("SHA-256"), "{p}");
    assert_eq!(report.shards_ok, 2);

    // Reading reports the same file.
    let ds = Dataset::open(tmp.path()).unwrap();
    let errors: Vec<String> = ds
        .shards()
        .filter_map(|s| s.err())
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("shard-00001.safetensors"),
        "{}",
        errors[0]
    );

    // A resumed datagen notices and remakes the damaged shard.
    let report = generate(&options(tmp.path()), &no_progress).unwrap();
    assert_eq!(report.shards_written, 1);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("shard-00001.safetensors")),
        "{:?}",
        report.notes
    );
    assert!(check_dataset(tmp.path()).is_ok());
}

#[test]
fn a_truncated_manifest_is_reported_with_the_file_name() {
    let tmp = TempDir::new("truncated");
    generate(&options(tmp.path()), &no_progress).unwrap();
    let path = tmp.path().join(MANIFEST_FILE);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();

    let report = check_dataset(tmp.path());
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].file, path);
    assert!(report.problems[0].to_string().contains("manifest.json"));
    assert!(
        report.problems[0].message.contains("truncated"),
        "{}",
        report.problems[0]
    );
    let err = Dataset::open(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("manifest.json"), "{err}");
    // Datagen refuses to guess either.
    let err = generate(&options(tmp.path()), &no_progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("manifest.json"), "{err}");
}

#[test]
fn a_shard_with_wrong_shapes_is_reported() {
    let tmp = TempDir::new("shapes");
    generate(&options(tmp.path()), &no_progress).unwrap();
    // Replace shard 0 by a valid safetensors file of another resolution, and fix its checksum
    // in the manifest, so only the shape check can catch it.
    let other = TempDir::new("shapes-other");
    let mut o = options(other.path());
    o.width = 8;
    generate(&o, &no_progress).unwrap();
    let src = std::fs::read(other.path().join(shard_file_name(0))).unwrap();
    std::fs::write(tmp.path().join(shard_file_name(0)), &src).unwrap();
    let mut m = Manifest::read(tmp.path()).unwrap();
    m.shards[0].bytes = src.len() as u64;
    m.shards[0].sha256 = bevy_nacre::dataset::sha256_hex(&src);
    m.write(tmp.path()).unwrap();
    let report = check_dataset(tmp.path());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0]
            .to_string()
            .contains("shard-00000.safetensors")
    );
    assert!(
        report.problems[0].message.contains("shape"),
        "{}",
        report.problems[0]
    );
}

#[test]
fn an_interrupted_datagen_resumes_without_duplicates_or_gaps() {
    let reference = TempDir::new("resume-ref");
    generate(&options(reference.path()), &no_progress).unwrap();

    let tmp = TempDir::new("resume");
    let mut first = options(tmp.path());
    first.stop_after_shards = Some(1);
    let report = generate(&first, &no_progress).unwrap();
    assert!(!report.complete);
    assert_eq!(report.shards_written, 1);
    let m = Manifest::read(tmp.path()).unwrap();
    assert_eq!(m.shards.len(), 1);
    assert!(!m.complete);
    let check = check_dataset(tmp.path());
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.message.contains("incomplete")),
        "{:?}",
        check.problems
    );

    // What a kill can leave behind: a temporary file and a finished shard the manifest never got.
    std::fs::write(
        tmp.path().join(".shard-00002.safetensors.tmp4242"),
        b"partial",
    )
    .unwrap();
    let unlisted = m.shards[0].index + 1;
    std::fs::write(tmp.path().join(shard_file_name(unlisted)), b"half a shard").unwrap();

    let report = generate(&options(tmp.path()), &no_progress).unwrap();
    assert!(report.complete);
    assert_eq!(report.shards_kept, 1);
    assert_eq!(report.shards_written, 2);
    assert!(
        report.notes.iter().any(|n| n.contains("tmp4242")),
        "{:?}",
        report.notes
    );
    assert!(!tmp.path().join(".shard-00002.safetensors.tmp4242").exists());

    // Identical to an uninterrupted run.
    assert_eq!(shard_bytes(tmp.path()), shard_bytes(reference.path()));
    assert_eq!(
        Manifest::read(tmp.path()).unwrap(),
        Manifest::read(reference.path()).unwrap()
    );
    let check = check_dataset(tmp.path());
    assert!(check.is_ok(), "{:?}", check.problems);
    assert!(check.notes.is_empty(), "{:?}", check.notes);

    // Running again does nothing; asking for more episodes extends the dataset.
    let report = generate(&options(tmp.path()), &no_progress).unwrap();
    assert_eq!(report.shards_written, 0);
    let mut more = options(tmp.path());
    more.episodes = 7;
    let report = generate(&more, &no_progress).unwrap();
    // Shard 2 held 1 episode and now holds 2; shard 3 is new.
    assert_eq!(report.shards_written, 2);
    let ds = Dataset::open(tmp.path()).unwrap();
    let idx: Vec<u64> = ds.episodes().map(|e| e.unwrap().index).collect();
    assert_eq!(idx, (0..7).collect::<Vec<u64>>());
    assert!(check_dataset(tmp.path()).is_ok());

    // Other parameters are refused, naming the manifest.
    let mut other = options(tmp.path());
    other.episodes = 7;
    other.seed = 78;
    let err = generate(&other, &no_progress).unwrap_err().to_string();
    assert!(
        err.contains("manifest.json") && err.contains("seed"),
        "{err}"
    );
}

/// Feeds the rows of `episode` (as `record_episode` made it) to `writer`, one step at a time as a
/// game's capture would.
fn push_episode(writer: &mut DatasetWriter, episode: &ShardData) {
    let dims = episode.dims;
    let (a, c, s) = (dims.actions, dims.controls, dims.audio_samples);
    for row in 0..episode.len() {
        let rgb = &episode.frames[row * dims.frame_bytes()..(row + 1) * dims.frame_bytes()];
        let frame = Frame::from_rgb(dims.width, dims.height, rgb);
        let audio: Vec<f32> = episode.audio[row * s..(row + 1) * s]
            .iter()
            .map(|&v| v as f32 / 32767.0)
            .collect();
        let pose: [f32; 5] = episode.pose[row * 5..row * 5 + 5].try_into().unwrap();
        writer
            .push(&CapturedStep {
                frame: &frame,
                action: &episode.actions[row * a..(row + 1) * a],
                controls: &episode.controls[row * c..(row + 1) * c],
                audio: &audio,
                pose,
            })
            .unwrap();
    }
}

#[test]
fn a_dataset_written_step_by_step_equals_datagens_and_resumes_after_an_interruption() {
    let tmp = TempDir::new("writer");
    let made = tmp.path().join("datagen");
    let opts = options(&made);
    generate(&opts, &|_, _| {}).unwrap();
    let reference = Manifest::read(&made).unwrap();
    let world = ReferenceWorld::new(opts.width, opts.height);
    let config = TrajectoryConfig {
        director_changes_per_minute: opts.director_changes_per_minute,
        random_start_controls: true,
        ..TrajectoryConfig::default()
    };
    let episode = |e: u64| {
        record_episode(
            &world,
            opts.seed,
            e,
            opts.frames_per_episode,
            &config,
            &|_| {},
        )
        .unwrap()
    };

    // Written step by step, interrupted in the middle of the second shard (episode 3 of 5).
    let out = tmp.path().join("captured");
    let spec = reference.model.clone();
    let mut writer = DatasetWriter::open(&out, &spec, reference.generator.clone()).unwrap();
    for e in 0..3 {
        assert_eq!(writer.episode(), e);
        push_episode(&mut writer, &episode(e));
    }
    assert_eq!(writer.manifest().shards.len(), 1);
    drop(writer);
    // Continued: the unfinished shard's episodes are recorded again, under the same indices.
    let mut writer = DatasetWriter::open(&out, &spec, reference.generator.clone()).unwrap();
    assert_eq!(writer.episode(), 2);
    while !writer.is_complete() {
        let e = writer.episode();
        push_episode(&mut writer, &episode(e));
    }
    let bad = writer.push(&CapturedStep {
        frame: &Frame::solid(opts.width, opts.height, [0, 0, 0, 255]),
        action: &vec![0.0; spec.actions.len()],
        controls: &vec![0.0; spec.controls.len()],
        audio: &[],
        pose: [0.0; 5],
    });
    assert!(bad.unwrap_err().to_string().contains("already holds all"));

    // The same files as `nacre datagen` wrote, and the check accepts them.
    let captured = Manifest::read(&out).unwrap();
    assert_eq!(captured, reference);
    for shard in &reference.shards {
        assert_eq!(
            std::fs::read(out.join(&shard.file)).unwrap(),
            std::fs::read(made.join(&shard.file)).unwrap(),
            "{}",
            shard.file
        );
    }
    assert!(check_dataset(&out).is_ok());
}

#[test]
fn a_dataset_writer_refuses_other_settings_and_wrong_steps() {
    let tmp = TempDir::new("writer-refuses");
    let world = ReferenceWorld::new(16, 12);
    let spec = world.spec().clone();
    let generator = GeneratorInfo {
        world: "my game".into(),
        world_version: "1".into(),
        seed: 3,
        episodes: 2,
        frames_per_episode: 4,
        episodes_per_shard: 1,
        director_changes_per_minute: 4.0,
    };
    let mut writer = DatasetWriter::open(tmp.path(), &spec, generator.clone()).unwrap();
    let frame = Frame::solid(16, 12, [10, 20, 30, 255]);
    let (action, controls) = (spec.neutral_action().values, spec.default_controls().values);
    let step = CapturedStep {
        frame: &frame,
        action: &action,
        controls: &controls,
        audio: &[],
        pose: [0.0; 5],
    };
    let small = Frame::solid(8, 8, [0, 0, 0, 255]);
    let nan = vec![f32::NAN; action.len()];
    for (wrong, why) in [
        (
            CapturedStep {
                frame: &small,
                ..step
            },
            "8x8",
        ),
        (
            CapturedStep {
                action: &action[1..],
                ..step
            },
            "action",
        ),
        (
            CapturedStep {
                action: &nan,
                ..step
            },
            "not finite",
        ),
    ] {
        let err = writer.push(&wrong).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        assert_eq!(
            writer.frame_in_episode(),
            0,
            "a refused step changes nothing"
        );
    }
    writer.push(&step).unwrap();
    drop(writer);
    // Other settings on the same folder are refused, naming the manifest.
    let other = GeneratorInfo {
        episodes: 3,
        ..generator
    };
    let err = DatasetWriter::open(tmp.path(), &spec, other)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(MANIFEST_FILE) && err.contains("other settings"),
        "{err}"
    );
}
