//! Command-line options of the examples, and which world model they play.

use std::path::PathBuf;
use std::sync::Arc;

use bevy::prelude::*;
use bevy_nacre::default_model;
use bevy_nacre::prelude::*;
use bevy_nacre::reference::ReferenceWorld;

/// Options shared by the examples.
#[derive(Resource, Clone, Debug)]
pub struct Options {
    /// Folder of a trained default model (`config.json` + `model.safetensors`).
    pub model: PathBuf,
    /// Play the reference world even if a model is there.
    pub reference: bool,
    /// Size of the reference world's frames.
    pub reference_size: (u32, u32),
    /// Seed of the session.
    pub seed: u64,
    /// Show a plain image instead of the generated view (for measuring the cost of the view).
    pub no_view: bool,
    /// Do not open a sound device.
    pub no_sound: bool,
    /// A director phrase to apply once the view runs (director example).
    pub direct: Option<String>,
}

const USAGE: &str = "options:
  --model PATH       folder of a trained default model (default: assets/models/default)
  --reference        play the procedural reference world
  --size WxH         frame size of the reference world (default 320x180)
  --seed N           seed of the world (default 7)
  --no-view          show a plain picture instead of the generated view (measurements)
  --no-sound         do not open a sound device
  --direct TEXT      a director phrase to apply at the start (director example)";

impl Options {
    /// Reads the options from the command line; prints the usage and exits on a bad option.
    pub fn from_args() -> Self {
        let mut o = Options {
            model: shipped_model_dir(),
            reference: false,
            reference_size: (320, 180),
            seed: 7,
            no_view: false,
            no_sound: false,
            direct: None,
        };
        let mut args = std::env::args().skip(1);
        let fail = |m: String| -> ! {
            eprintln!("{m}\n{USAGE}");
            std::process::exit(2)
        };
        while let Some(a) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .unwrap_or_else(|| fail(format!("{name} needs a value")))
            };
            match a.as_str() {
                "--model" => o.model = PathBuf::from(value("--model")),
                "--reference" => o.reference = true,
                "--size" => {
                    let v = value("--size");
                    let parsed = v
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                        .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0 && w <= 4096 && h <= 4096);
                    o.reference_size = parsed.unwrap_or_else(|| fail(format!("bad --size {v}")));
                }
                "--seed" => {
                    let v = value("--seed");
                    o.seed = v
                        .parse()
                        .unwrap_or_else(|_| fail(format!("bad --seed {v}")));
                }
                "--no-view" => o.no_view = true,
                "--no-sound" => o.no_sound = true,
                "--direct" => o.direct = Some(value("--direct")),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0)
                }
                other => fail(format!("unknown option {other}")),
            }
        }
        o
    }
}

/// The model a view plays, as the HUD describes it.
#[derive(Clone, Debug)]
pub struct ModelChoice {
    /// The id it is registered under.
    pub id: &'static str,
    /// A line for the HUD.
    pub label: String,
}

/// Id of the reference world in the examples.
pub const REFERENCE_ID: &str = "reference";
/// Id of the default model in the examples.
pub const DEFAULT_ID: &str = "default";

/// Registers the reference world (at the options' size) under [`REFERENCE_ID`].
pub fn add_reference(app: &mut App, options: &Options) -> ModelChoice {
    let (w, h) = options.reference_size;
    app.add_world_model(REFERENCE_ID, move |_| {
        Ok(Arc::new(ReferenceWorld::new(w, h)) as Arc<dyn WorldModel>)
    });
    ModelChoice {
        id: REFERENCE_ID,
        label: "reference world (procedural)".into(),
    }
}

/// Registers the default model if its folder exists; `None` (with a message on stderr) if not.
pub fn add_default_model(app: &mut App, options: &Options) -> Option<ModelChoice> {
    let dir = options.model.clone();
    if !dir.join("config.json").is_file() {
        eprintln!(
            "bevy_nacre: no trained model at {} (expected config.json and model.safetensors); \
             playing the procedural reference world instead. Train one with `nacre train` or \
             pass --model PATH.",
            dir.display()
        );
        return None;
    }
    let label = format!("default model ({})", dir.display());
    app.add_world_model(DEFAULT_ID, move |device| {
        // Views start from the reference world's first frames, which the model was trained on.
        let model = default_model::load(&dir, device)?
            .with_start_frames(bevy_nacre::reference::start_frames);
        Ok(Arc::new(model) as Arc<dyn WorldModel>)
    });
    Some(ModelChoice {
        id: DEFAULT_ID,
        label,
    })
}

/// The model `--reference`/`--model` ask for: the default model when its folder exists, else
/// the reference world (and the HUD says why).
pub fn choose_model(app: &mut App, options: &Options) -> ModelChoice {
    if options.reference {
        return add_reference(app, options);
    }
    match add_default_model(app, options) {
        Some(choice) => choice,
        None => {
            let mut choice = add_reference(app, options);
            choice.label = format!("reference world - no model at {}", options.model.display());
            choice
        }
    }
}

/// `assets/models/default` under the working directory if it is there (a game run from its own
/// folder), else under this project's root (an example binary run from anywhere).
fn shipped_model_dir() -> PathBuf {
    let here = PathBuf::from(default_model::SHIPPED_DIR);
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default_model::SHIPPED_DIR)
}
