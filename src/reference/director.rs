//! A small parser for director phrases: "stormy night in the desert", "sunrise", "clear skies",
//! "foggy morning by the sea", "7pm". It maps words to the reference world's controls and reports
//! the words it did not understand.

use super::{Biome, Weather, control_index as ci};
use crate::action::Controls;
use crate::spec::ModelSpec;

/// What a phrase asks for. `None` fields leave the control as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Direction {
    /// Time of day in hours.
    pub time_of_day: Option<f32>,
    /// Weather.
    pub weather: Option<Weather>,
    /// Biome preference: `Some(None)` means "any".
    pub biome: Option<Option<Biome>>,
    /// Fire the `landmark` trigger.
    pub landmark: bool,
    /// Fire the `storm` trigger.
    pub storm: bool,
    /// Words that meant nothing to the parser, in order of appearance.
    pub unknown: Vec<String>,
}

impl Direction {
    /// Whether the phrase asked for anything at all.
    pub fn is_empty(&self) -> bool {
        self.time_of_day.is_none()
            && self.weather.is_none()
            && self.biome.is_none()
            && !self.landmark
            && !self.storm
    }

    /// Writes the requested changes into `controls` (laid out as `spec` says; controls the spec
    /// lacks are skipped).
    pub fn apply(&self, spec: &ModelSpec, controls: &mut Controls) {
        let mut set = |name: &str, v: f32| {
            if let Some(i) = spec.control_index(name)
                && let Some(slot) = controls.values.get_mut(i)
            {
                *slot = v;
            }
        };
        if let Some(t) = self.time_of_day {
            set(super::CONTROL_NAMES[ci::TIME_OF_DAY], t);
        }
        if let Some(w) = self.weather {
            set(super::CONTROL_NAMES[ci::WEATHER], w.control_value());
        }
        if let Some(b) = self.biome {
            set(
                super::CONTROL_NAMES[ci::BIOME],
                b.map_or(0.0, Biome::control_value),
            );
        }
        if self.landmark {
            set(super::CONTROL_NAMES[ci::LANDMARK], 1.0);
        }
        if self.storm {
            set(super::CONTROL_NAMES[ci::STORM], 1.0);
        }
    }
}

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
];

fn word_time(w: &str) -> Option<f32> {
    Some(match w {
        "dawn" | "daybreak" | "firstlight" => 5.6,
        "sunrise" | "sunup" => 6.1,
        "morning" | "breakfast" => 9.0,
        "noon" | "midday" | "daytime" | "lunchtime" => 12.0,
        "afternoon" => 15.0,
        "golden" => 17.5,
        "sunset" | "sundown" => 17.9,
        "dusk" | "twilight" => 18.4,
        "evening" => 18.8,
        "night" | "nighttime" | "nightfall" | "stormy_night" => 22.0,
        "midnight" => 0.0,
        _ => return None,
    })
}

fn word_weather(w: &str) -> Option<Weather> {
    Some(match w {
        "clear" | "sunny" | "fair" | "bright" | "cloudless" | "blue" => Weather::Clear,
        "cloudy" | "overcast" | "grey" | "gray" | "clouds" | "clouded" | "dull" | "gloomy" => {
            Weather::Overcast
        }
        "rain" | "rainy" | "raining" | "drizzle" | "showers" | "shower" | "wet" | "downpour"
        | "rainstorm" => Weather::Rain,
        "snow" | "snowy" | "snowing" | "snowfall" | "blizzard" | "flurries" => Weather::Snow,
        "fog" | "foggy" | "mist" | "misty" | "haze" | "hazy" => Weather::Fog,
        _ => return None,
    })
}

fn word_biome(w: &str) -> Option<Option<Biome>> {
    Some(match w {
        "grassland" | "grasslands" | "meadow" | "meadows" | "plains" | "prairie" | "fields"
        | "field" | "grass" | "hills" => Some(Biome::Grassland),
        "forest" | "forests" | "woods" | "wood" | "woodland" | "trees" | "jungle" => {
            Some(Biome::Forest)
        }
        "desert" | "deserts" | "dunes" | "dune" | "sand" | "sandy" | "sahara" => {
            Some(Biome::Desert)
        }
        "mountains" | "mountain" | "tundra" | "arctic" | "alpine" | "glacier" | "snowfield"
        | "peaks" | "winter" | "snowland" => Some(Biome::Snow),
        "shore" | "beach" | "coast" | "coastal" | "sea" | "ocean" | "lake" | "seaside"
        | "island" | "water" => Some(Biome::Shore),
        "anywhere" | "any" | "wherever" => None,
        _ => return None,
    })
}

fn word_storm(w: &str) -> bool {
    matches!(
        w,
        "storm" | "stormy" | "thunder" | "thunderstorm" | "lightning" | "tempest" | "thundering"
    )
}

fn word_landmark(w: &str) -> bool {
    matches!(
        w,
        "landmark"
            | "tower"
            | "monument"
            | "monolith"
            | "ruin"
            | "ruins"
            | "arch"
            | "castle"
            | "lighthouse"
            | "obelisk"
    )
}

/// Parses a clock time token such as `7`, `7pm`, `19:30`, `7:15am` (with an optional separate
/// `am`/`pm` token following).
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
        None if body.contains(':') && h <= 24 => {}
        None if suffix.is_none() && h <= 24 && !body.is_empty() => {}
        None => return None,
    }
    Some((hours % 24.0, consumed_next))
}

/// Parses a director phrase.
pub fn parse(text: &str) -> Direction {
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .collect();
    let mut d = Direction::default();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let prev = if i > 0 { Some(tokens[i - 1]) } else { None };
        let next = tokens.get(i + 1).copied();
        // "in the snow": after "in"/"into"/"the", "snow" names the land rather than the weather.
        let place_context =
            matches!(prev, Some("the")) && i >= 2 && matches!(tokens[i - 2], "in" | "into" | "to");
        if t.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            if let Some((h, consumed)) = clock(t, next) {
                d.time_of_day = Some(h);
                i += 1 + consumed as usize;
                continue;
            }
            d.unknown.push(t.to_string());
        } else if place_context && t == "snow" {
            d.biome = Some(Some(Biome::Snow));
        } else if t == "golden" && next == Some("hour") {
            d.time_of_day = Some(17.5);
            i += 2;
            continue;
        } else if let Some(h) = word_time(t) {
            d.time_of_day = Some(h);
        } else if word_storm(t) {
            d.storm = true;
        } else if t == "blizzard" {
            d.weather = Some(Weather::Snow);
            d.storm = true;
        } else if let Some(w) = word_weather(t) {
            d.weather = Some(w);
        } else if let Some(b) = word_biome(t) {
            d.biome = Some(b);
        } else if word_landmark(t) {
            d.landmark = true;
        } else if matches!(t, "am" | "pm" | "hour") || IGNORED.contains(&t) {
            // Glue words.
        } else {
            d.unknown.push(t.to_string());
        }
        i += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::reference_spec;

    #[test]
    fn understands_the_examples() {
        let d = parse("stormy night in the desert");
        assert!(d.storm);
        assert_eq!(d.time_of_day, Some(22.0));
        assert_eq!(d.biome, Some(Some(Biome::Desert)));
        assert!(d.unknown.is_empty());
        assert_eq!(parse("sunrise").time_of_day, Some(6.1));
        let d = parse("Clear skies!");
        assert_eq!(d.weather, Some(Weather::Clear));
        assert!(d.unknown.is_empty());
        let d = parse("foggy morning by the sea, a tower appears");
        assert_eq!(d.weather, Some(Weather::Fog));
        assert_eq!(d.time_of_day, Some(9.0));
        assert_eq!(d.biome, Some(Some(Biome::Shore)));
        assert!(d.landmark);
    }

    #[test]
    fn clock_times_and_unknown_words() {
        assert_eq!(parse("7pm").time_of_day, Some(19.0));
        assert_eq!(parse("at 6:30 am").time_of_day, Some(6.5));
        assert_eq!(parse("12am").time_of_day, Some(0.0));
        assert_eq!(parse("18:45").time_of_day, Some(18.75));
        let d = parse("purple dragons in the snow");
        assert_eq!(d.unknown, vec!["purple".to_string(), "dragons".to_string()]);
        assert_eq!(d.biome, Some(Some(Biome::Snow)));
        assert_eq!(d.weather, None);
        assert_eq!(parse("25pm").unknown, vec!["25pm".to_string()]);
        assert!(parse("").is_empty());
    }

    #[test]
    fn applies_to_controls() {
        let spec = reference_spec(8, 8);
        let mut c = spec.default_controls();
        parse("snowy evening in the mountains, thunder").apply(&spec, &mut c);
        assert_eq!(c.values[ci::WEATHER], Weather::Snow.control_value());
        assert_eq!(c.values[ci::TIME_OF_DAY], 18.8);
        assert_eq!(c.values[ci::BIOME], Biome::Snow.control_value());
        assert_eq!(c.values[ci::STORM], 1.0);
        assert_eq!(c.values[ci::LANDMARK], 0.0);
    }
}
