//! Contact sheets: grids of reference-world frames across biomes, times of day and weathers, so
//! people (and reviewers) can see the world. `nacre reference-sheet` writes one as a PNG.

use super::{Biome, ReferenceWorld, Weather, control_index as ci};
use crate::action::{Action, Controls};
use crate::error::Result;
use crate::frame::Frame;
use crate::spec::ModelSpec;
use crate::world_model::{Prompt, StepInput};

/// One picture on a sheet: where, when and in what weather.
#[derive(Clone, Debug, PartialEq)]
pub struct SheetCell {
    /// Short description.
    pub label: String,
    /// World seed.
    pub seed: u64,
    /// Preferred biome (the session starts in it).
    pub biome: Option<Biome>,
    /// Time of day, hours.
    pub time_of_day: f32,
    /// Weather.
    pub weather: Weather,
    /// Frames walked forward before the picture.
    pub walk_frames: u32,
    /// Fire the storm trigger this many frames before the picture (lightning).
    pub storm_before: Option<u32>,
    /// Fire the landmark trigger at the start.
    pub landmark: bool,
    /// Pitch input held during the walk (positive looks up).
    pub look: f32,
}

impl SheetCell {
    fn new(label: &str, seed: u64, biome: Biome, time_of_day: f32, weather: Weather) -> Self {
        Self {
            label: label.into(),
            seed,
            biome: Some(biome),
            time_of_day,
            weather,
            walk_frames: 30,
            storm_before: None,
            landmark: false,
            look: 0.0,
        }
    }
}

/// The sheet shown in the docs: every biome, dawn to night, every weather, a storm, a landmark.
pub fn default_cells() -> Vec<SheetCell> {
    let mut cells = vec![
        SheetCell::new(
            "grassland, noon, clear",
            11,
            Biome::Grassland,
            12.0,
            Weather::Clear,
        ),
        SheetCell::new(
            "forest, morning, clear",
            12,
            Biome::Forest,
            9.0,
            Weather::Clear,
        ),
        SheetCell::new(
            "desert, afternoon, clear",
            13,
            Biome::Desert,
            15.5,
            Weather::Clear,
        ),
        SheetCell::new("snow, noon, clear", 45, Biome::Snow, 12.5, Weather::Clear),
        SheetCell::new("shore, noon, clear", 15, Biome::Shore, 11.0, Weather::Clear),
        SheetCell::new(
            "grassland, sunset",
            16,
            Biome::Grassland,
            17.85,
            Weather::Clear,
        ),
        SheetCell::new("desert, sunrise", 17, Biome::Desert, 6.15, Weather::Clear),
        SheetCell::new("shore, night, moon", 18, Biome::Shore, 23.0, Weather::Clear),
        SheetCell::new(
            "forest, overcast",
            19,
            Biome::Forest,
            13.0,
            Weather::Overcast,
        ),
        SheetCell::new("grassland, rain", 20, Biome::Grassland, 14.0, Weather::Rain),
        SheetCell::new("snow, snowfall", 21, Biome::Snow, 11.0, Weather::Snow),
        SheetCell::new("forest, fog", 22, Biome::Forest, 10.0, Weather::Fog),
    ];
    let mut storm = SheetCell::new(
        "grassland, storm, lightning",
        23,
        Biome::Grassland,
        16.0,
        Weather::Rain,
    );
    storm.storm_before = Some(1);
    cells.push(storm);
    let mut landmark = SheetCell::new(
        "grassland, landmark",
        24,
        Biome::Grassland,
        17.0,
        Weather::Clear,
    );
    landmark.landmark = true;
    landmark.walk_frames = 20;
    cells.push(landmark);
    let mut tower = SheetCell::new(
        "desert, dusk, landmark",
        51,
        Biome::Desert,
        18.1,
        Weather::Clear,
    );
    tower.landmark = true;
    tower.walk_frames = 10;
    cells.push(tower);
    let mut up = SheetCell::new(
        "snowy mountains, afternoon, looking up",
        62,
        Biome::Snow,
        15.0,
        Weather::Clear,
    );
    up.look = 0.3;
    cells.push(up);
    cells
}

/// The controls of a cell.
pub fn cell_controls(spec: &ModelSpec, cell: &SheetCell) -> Controls {
    let mut c = spec.default_controls();
    c.values[ci::TIME_OF_DAY] = cell.time_of_day;
    c.values[ci::WEATHER] = cell.weather.control_value();
    c.values[ci::BIOME] = cell.biome.map_or(0.0, Biome::control_value);
    c
}

/// Renders one cell's picture.
pub fn render_cell(world: &ReferenceWorld, cell: &SheetCell) -> Result<Frame> {
    use crate::world_model::WorldModel;
    let spec = world.spec().clone();
    let controls = cell_controls(&spec, cell);
    let mut session = world.start_session(&Prompt {
        seed: cell.seed,
        start_frames: Vec::new(),
        controls: Some(controls.clone()),
    })?;
    let mut last = None;
    for f in 0..cell.walk_frames.max(1) {
        let mut c = controls.clone();
        if cell.landmark && f == 0 {
            c.values[ci::LANDMARK] = 1.0;
        }
        if cell
            .storm_before
            .is_some_and(|b| cell.walk_frames.max(1) - 1 - f == b)
        {
            c.values[ci::STORM] = 1.0;
        }
        let action = Action::new(vec![1.0, 0.0, 0.0, cell.look, 0.0, 0.0]);
        last = Some(
            session
                .step_world(&StepInput {
                    action,
                    controls: c,
                })?
                .frame,
        );
    }
    Ok(last.expect("at least one frame"))
}

/// Renders `cells` at `width`×`height` and lays them out `columns` wide with a 2-pixel gap.
pub fn contact_sheet(
    width: u32,
    height: u32,
    cells: &[SheetCell],
    columns: usize,
) -> Result<image::RgbImage> {
    let world = ReferenceWorld::new(width, height);
    let columns = columns.max(1);
    let rows = cells.len().div_ceil(columns);
    let gap = 2u32;
    let sw = columns as u32 * (width + gap) + gap;
    let sh = rows as u32 * (height + gap) + gap;
    let mut img = image::RgbImage::from_pixel(sw, sh, image::Rgb([24, 24, 28]));
    for (i, cell) in cells.iter().enumerate() {
        let frame = render_cell(&world, cell)?;
        let ox = gap + (i % columns) as u32 * (width + gap);
        let oy = gap + (i / columns) as u32 * (height + gap);
        for y in 0..height {
            for x in 0..width {
                let p = ((y * width + x) * 4) as usize;
                let px = &frame.rgba[p..p + 3];
                img.put_pixel(ox + x, oy + y, image::Rgb([px[0], px[1], px[2]]));
            }
        }
    }
    Ok(img)
}
