//! Director phrases for any model's declared controls: "stormy night in the desert",
//! "sunrise", "clear skies", "foggy morning by the sea", "7pm".
//!
//! The parser knows no model. It reads the controls a model declares ([`ControlSpec`]s) and
//! matches words against them:
//!
//! - a **choice** control's option by its name ("rain") or a synonym of that option of a control
//!   of that name ("drizzle" for `weather`'s `rain`, "dunes" for `biome`'s `desert`);
//! - a **trigger** by its name ("storm") or a synonym ("thunder", "tower" for `landmark`);
//! - a **cyclic 24-hour** control (time of day) by a time word ("dusk") or a clock time ("7pm",
//!   "19:30").
//!
//! A word that names an option of several choice controls ("snow": a weather and a biome) sets
//! the first of them in the spec's order, or the last after "in the", "into the" or "to the"
//! ("in the snow" is a place). One word may also set a choice and fire a trigger ("blizzard":
//! snow and a storm). Words it does not understand, or that name nothing this model has, are
//! listed in [`Direction::unknown`].

use crate::action::Controls;
use crate::spec::{ControlKind, ControlSpec};

/// What a phrase asks for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Direction {
    /// `(control index, value)` in the order the phrase gave them; a later word for the same
    /// control wins when applied.
    pub changes: Vec<(usize, f32)>,
    /// Words that meant nothing for this model's controls, in order of appearance.
    pub unknown: Vec<String>,
}

impl Direction {
    /// Whether the phrase asked for anything at all.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Writes the requested changes into `controls` (in the order of the controls the phrase
    /// was parsed for).
    pub fn apply(&self, controls: &mut Controls) {
        for &(i, v) in &self.changes {
            if let Some(slot) = controls.values.get_mut(i) {
                *slot = v;
            }
        }
    }

    /// The changes in words, e.g. `time_of_day 22, biome desert, storm`.
    pub fn describe(&self, controls: &[ControlSpec]) -> String {
        self.changes
            .iter()
            .filter_map(|&(i, v)| {
                let c = controls.get(i)?;
                Some(match &c.kind {
                    ControlKind::Choice { options, .. } => {
                        format!("{} {}", c.name, options.get(v as usize)?)
                    }
                    ControlKind::Trigger => c.name.clone(),
                    ControlKind::Continuous { .. } => format!("{} {v}", c.name),
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Glue words: understood, and meaning nothing.
const IGNORED: &[&str] = &[
    "a",
    "an",
    "the",
    "in",
    "on",
    "at",
    "of",
    "with",
    "and",
    "to",
    "into",
    "by",
    "under",
    "over",
    "it",
    "is",
    "its",
    "make",
    "let",
    "lets",
    "please",
    "some",
    "sky",
    "skies",
    "weather",
    "time",
    "now",
    "then",
    "go",
    "set",
    "during",
    "through",
    "very",
    "heavy",
    "light",
    "little",
    "bit",
    "there",
    "be",
    "bring",
    "show",
    "me",
    "us",
    "walk",
    "walking",
    "while",
    "but",
    "for",
    "from",
    "near",
    "across",
    "towards",
    "toward",
    "up",
    "down",
    "day",
    "turn",
    "change",
    "switch",
    "start",
    "begin",
    "appear",
    "appears",
    "appearing",
    "ahead",
    "far",
    "distance",
    "o",
    "clock",
    "full",
    "deep",
    "big",
    "large",
    "great",
    "old",
    "ancient",
    "wild",
    "calm",
    "quiet",
    "cold",
    "hot",
    "warm",
    "land",
    "am",
    "pm",
    "hour",
];

/// Hours of the day named by a word.
const TIME_WORDS: &[(&[&str], f32)] = &[
    (&["dawn", "daybreak", "firstlight"], 5.6),
    (&["sunrise", "sunup"], 6.1),
    (&["morning", "breakfast"], 9.0),
    (&["noon", "midday", "daytime", "lunchtime"], 12.0),
    (&["afternoon"], 15.0),
    (&["golden"], 17.5),
    (&["sunset", "sundown"], 17.9),
    (&["dusk", "twilight"], 18.4),
    (&["evening"], 18.8),
    (&["night", "nighttime", "nightfall"], 22.0),
    (&["midnight"], 0.0),
];

/// Synonyms of an option of a choice control with a given name: `(control, option, words)`.
const OPTION_WORDS: &[(&str, &str, &[&str])] = &[
    (
        "weather",
        "clear",
        &["sunny", "fair", "bright", "cloudless", "blue"],
    ),
    (
        "weather",
        "overcast",
        &[
            "cloudy", "grey", "gray", "clouds", "clouded", "dull", "gloomy",
        ],
    ),
    (
        "weather",
        "rain",
        &[
            "rainy",
            "raining",
            "drizzle",
            "showers",
            "shower",
            "wet",
            "downpour",
            "rainstorm",
        ],
    ),
    (
        "weather",
        "snow",
        &["snowy", "snowing", "snowfall", "blizzard", "flurries"],
    ),
    (
        "weather",
        "fog",
        &["foggy", "mist", "misty", "haze", "hazy"],
    ),
    (
        "biome",
        "grassland",
        &[
            "grasslands",
            "meadow",
            "meadows",
            "plains",
            "prairie",
            "fields",
            "field",
            "grass",
            "hills",
        ],
    ),
    (
        "biome",
        "forest",
        &["forests", "woods", "wood", "woodland", "trees", "jungle"],
    ),
    (
        "biome",
        "desert",
        &["deserts", "dunes", "dune", "sand", "sandy", "sahara"],
    ),
    (
        "biome",
        "snow",
        &[
            "mountains",
            "mountain",
            "tundra",
            "arctic",
            "alpine",
            "glacier",
            "snowfield",
            "peaks",
            "winter",
            "snowland",
        ],
    ),
    (
        "biome",
        "shore",
        &[
            "beach", "coast", "coastal", "sea", "ocean", "lake", "seaside", "island", "water",
        ],
    ),
    ("biome", "any", &["anywhere", "wherever"]),
];

/// Synonyms of a trigger control with a given name.
const TRIGGER_WORDS: &[(&str, &[&str])] = &[
    (
        "storm",
        &[
            "stormy",
            "thunder",
            "thunderstorm",
            "lightning",
            "tempest",
            "thundering",
            "blizzard",
        ],
    ),
    (
        "landmark",
        &[
            "tower",
            "monument",
            "monolith",
            "ruin",
            "ruins",
            "arch",
            "castle",
            "lighthouse",
            "obelisk",
        ],
    ),
];

/// Whether `control` is a clock: a cyclic continuous control over 0 to 24.
fn is_clock(control: &ControlSpec) -> bool {
    matches!(
        control.kind,
        ControlKind::Continuous {
            min: 0.0,
            max: 24.0,
            wraps: true,
            ..
        }
    )
}

/// The options of choice controls that `word` names: `(control index, option index)`.
fn options_named(controls: &[ControlSpec], word: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (i, control) in controls.iter().enumerate() {
        let ControlKind::Choice { options, .. } = &control.kind else {
            continue;
        };
        let synonym = |option: &str| {
            OPTION_WORDS.iter().any(|(c, o, words)| {
                *c == control.name && o.eq_ignore_ascii_case(option) && words.contains(&word)
            })
        };
        if let Some(o) = options
            .iter()
            .position(|o| o.eq_ignore_ascii_case(word) || synonym(o))
        {
            found.push((i, o));
        }
    }
    found
}

/// The trigger controls that `word` fires.
fn triggers_named(controls: &[ControlSpec], word: &str) -> Vec<usize> {
    controls
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.kind, ControlKind::Trigger))
        .filter(|(_, c)| {
            c.name.eq_ignore_ascii_case(word)
                || TRIGGER_WORDS
                    .iter()
                    .any(|(name, words)| *name == c.name && words.contains(&word))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Parses a clock time token such as `7`, `7pm`, `19:30`, `7:15am` (with an optional separate
/// `am`/`pm` token following). Returns the hour and whether the next token was consumed.
fn clock(token: &str, next: Option<&str>) -> Option<(f32, bool)> {
    let (body, mut suffix) = if let Some(b) = token.strip_suffix("am") {
        (b, Some(false))
    } else if let Some(b) = token.strip_suffix("pm") {
        (b, Some(true))
    } else {
        (token, None)
    };
    let mut consumed_next = false;
    if suffix.is_none() {
        match next {
            Some("am") => {
                suffix = Some(false);
                consumed_next = true;
            }
            Some("pm") => {
                suffix = Some(true);
                consumed_next = true;
            }
            _ => {}
        }
    }
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        None => (body.parse::<u32>().ok()?, 0),
    };
    if m >= 60 {
        return None;
    }
    let mut hours = h as f32 + m as f32 / 60.0;
    match suffix {
        Some(pm) => {
            if h == 0 || h > 12 {
                return None;
            }
            hours %= 12.0;
            if pm {
                hours += 12.0;
            }
        }
        None if h <= 24 && !body.is_empty() => {}
        None => return None,
    }
    Some((hours % 24.0, consumed_next))
}

/// Parses a director phrase for a model with `controls`.
pub fn parse(controls: &[ControlSpec], text: &str) -> Direction {
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .collect();
    let clock_control = controls.iter().position(is_clock);
    let mut d = Direction::default();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let next = tokens.get(i + 1).copied();
        // "in the snow": after "in/into/to the", a word several controls share names a place.
        let place =
            i >= 2 && tokens[i - 1] == "the" && matches!(tokens[i - 2], "in" | "into" | "to");
        let mut understood = false;
        let mut skip = 0;
        if let Some(clock_i) = clock_control {
            let time = if t.starts_with(|c: char| c.is_ascii_digit()) {
                clock(t, next).map(|(h, consumed)| {
                    skip = consumed as usize;
                    h
                })
            } else if t == "golden" && next == Some("hour") {
                skip = 1;
                Some(17.5)
            } else {
                TIME_WORDS
                    .iter()
                    .find(|(words, _)| words.contains(&t))
                    .map(|&(_, h)| h)
            };
            if let Some(h) = time {
                d.changes.push((clock_i, h));
                understood = true;
            }
        }
        if !understood {
            let options = options_named(controls, t);
            let chosen = if place {
                options.last()
            } else {
                options.first()
            };
            if let Some(&(c, o)) = chosen {
                d.changes.push((c, o as f32));
                understood = true;
            }
            for trigger in triggers_named(controls, t) {
                d.changes.push((trigger, 1.0));
                understood = true;
            }
        }
        if !understood && !IGNORED.contains(&t) {
            d.unknown.push(t.to_string());
        }
        i += 1 + skip;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::first_person::{control_index as ci, control_specs};

    /// The phrase's value for control `c`, as applied.
    fn value(d: &Direction, c: usize) -> Option<f32> {
        d.changes
            .iter()
            .rev()
            .find(|(i, _)| *i == c)
            .map(|&(_, v)| v)
    }

    #[test]
    fn understands_the_examples() {
        let controls = control_specs();
        let d = parse(&controls, "stormy night in the desert");
        assert_eq!(value(&d, ci::STORM), Some(1.0));
        assert_eq!(value(&d, ci::TIME_OF_DAY), Some(22.0));
        assert_eq!(value(&d, ci::BIOME), Some(3.0), "desert");
        assert!(d.unknown.is_empty());
        assert_eq!(d.describe(&controls), "storm, time_of_day 22, biome desert");
        assert_eq!(
            value(&parse(&controls, "sunrise"), ci::TIME_OF_DAY),
            Some(6.1)
        );
        let d = parse(&controls, "Clear skies!");
        assert_eq!(value(&d, ci::WEATHER), Some(0.0));
        assert!(d.unknown.is_empty());
        let d = parse(&controls, "foggy morning by the sea, a tower appears");
        assert_eq!(value(&d, ci::WEATHER), Some(4.0), "fog");
        assert_eq!(value(&d, ci::TIME_OF_DAY), Some(9.0));
        assert_eq!(value(&d, ci::BIOME), Some(5.0), "shore");
        assert_eq!(value(&d, ci::LANDMARK), Some(1.0));
        let d = parse(&controls, "a blizzard");
        assert_eq!(value(&d, ci::WEATHER), Some(3.0), "snow");
        assert_eq!(value(&d, ci::STORM), Some(1.0));
    }

    #[test]
    fn clock_times_places_and_unknown_words() {
        let controls = control_specs();
        let time = |text| value(&parse(&controls, text), ci::TIME_OF_DAY);
        assert_eq!(time("7pm"), Some(19.0));
        assert_eq!(time("at 6:30 am"), Some(6.5));
        assert_eq!(time("12am"), Some(0.0));
        assert_eq!(time("18:45"), Some(18.75));
        assert_eq!(time("golden hour"), Some(17.5));
        let d = parse(&controls, "purple dragons in the snow");
        assert_eq!(d.unknown, vec!["purple".to_string(), "dragons".to_string()]);
        assert_eq!(value(&d, ci::BIOME), Some(4.0), "in the snow is a place");
        assert_eq!(value(&d, ci::WEATHER), None);
        assert_eq!(value(&parse(&controls, "snow"), ci::WEATHER), Some(3.0));
        assert_eq!(parse(&controls, "25pm").unknown, vec!["25pm".to_string()]);
        assert!(parse(&controls, "").is_empty());
    }

    #[test]
    fn applies_to_any_models_controls_and_names_what_it_lacks() {
        let controls = control_specs();
        let mut c = Controls::new(controls.iter().map(ControlSpec::default_value).collect());
        parse(&controls, "snowy evening in the mountains, thunder").apply(&mut c);
        assert_eq!(c.values[ci::WEATHER], 3.0);
        assert_eq!(c.values[ci::TIME_OF_DAY], 18.8);
        assert_eq!(c.values[ci::BIOME], 4.0);
        assert_eq!(c.values[ci::STORM], 1.0);
        assert_eq!(c.values[ci::LANDMARK], 0.0);

        // Another model's controls: its own option names work; what it lacks is unknown.
        let other = vec![
            ControlSpec::choice("season", &["spring", "autumn"], 0),
            ControlSpec::trigger("door"),
        ];
        let d = parse(&other, "autumn night, open the door");
        assert_eq!(d.changes, vec![(0, 1.0), (1, 1.0)]);
        assert_eq!(d.unknown, vec!["night".to_string(), "open".to_string()]);
    }
}
