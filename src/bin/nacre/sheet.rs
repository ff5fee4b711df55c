//! `nacre reference-sheet`: renders a contact sheet of the reference world as a PNG.

use std::path::PathBuf;

use bevy_nacre::files::save_png;
use bevy_nacre::reference::sheet::{contact_sheet, default_cells};

/// Arguments of `nacre reference-sheet`.
#[derive(clap::Args, Debug)]
pub struct SheetArgs {
    /// PNG file to write.
    #[arg(long, default_value = "docs/reference-world.png")]
    pub out: PathBuf,
    /// Resolution of each picture, WxH.
    #[arg(long, default_value = "128x128", value_parser = crate::datagen::parse_res)]
    pub res: (u32, u32),
    /// Pictures per row.
    #[arg(long, default_value_t = 4)]
    pub columns: usize,
}

/// Runs the command.
pub fn run(args: &SheetArgs) -> bevy_nacre::Result<()> {
    let cells = default_cells();
    let img = contact_sheet(args.res.0, args.res.1, &cells, args.columns)?;
    save_png(&args.out, &img)?;
    println!(
        "wrote {} ({} pictures at {}x{}):",
        args.out.display(),
        cells.len(),
        args.res.0,
        args.res.1
    );
    for (i, c) in cells.iter().enumerate() {
        println!(
            "  {:2}. row {} col {}: {}",
            i + 1,
            i / args.columns + 1,
            i % args.columns + 1,
            c.label
        );
    }
    Ok(())
}
