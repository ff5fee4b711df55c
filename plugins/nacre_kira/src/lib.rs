//! Generated sound for [bevy_nacre] world views, played through
//! [kira](https://docs.rs/kira) 0.12 — the audio library under bevy_kira_audio 0.26.
//!
//! Add [`GeneratedSoundPlugin`] after `NacrePlugin` and put a [`ViewSound`] on each
//! `WorldView` you want to hear. Every [`WorldViewAudio`] chunk of those views goes, in order,
//! into a streaming kira sound whose [jitter buffer](stream) plays it without gaps or clicks at
//! the sound card's rate. [`GeneratedSound`] sets the volume and mutes.
//!
//! ## Why a streaming sound and not one sound per chunk
//!
//! bevy_kira_audio 0.26 plays [`StaticSoundData`](kira::sound::static_sound::StaticSoundData)
//! only, and starts a sound at the first audio callback after the game's `PostUpdate` handed it
//! over. Chunks of 50 ms scheduled that way would start wherever the game frame and the device
//! callback happen to fall: gaps and overlaps of up to a game frame plus a callback (20–60 ms
//! here), which are audible as clicks or stutter. It has no sample-accurate clock to schedule
//! against either (its `AudioManager` is private). A custom kira [`Sound`] that pulls from a
//! queue fed by the game is continuous by construction: the device clock drives it, jitter is
//! absorbed by a ~120 ms buffer, and the rare underrun fades out and back in.
//!
//! Since bevy_kira_audio gives no way to play a custom sound through its manager, this plugin
//! opens its own kira `AudioManager` (the same kira version, so a game that also uses
//! bevy_kira_audio compiles one kira). Volume and mute are therefore set on [`GeneratedSound`]
//! and [`ViewSound`], not on a bevy_kira_audio channel.
//!
//! ## Without a sound device
//!
//! If no output device can be opened, the plugin logs one warning, reports
//! [`SoundStatus::NoDevice`], and drops the chunks: the game runs on, silently.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod stream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use bevy::prelude::*;
use bevy_nacre::plugin::{NacreSystems, WorldViewAudio};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use kira::info::Info;
use kira::sound::{Sound, SoundData};
use kira::{AudioManager, AudioManagerSettings, DefaultBackend};

pub use stream::{StreamBuffer, StreamConfig, StreamCounters};

/// Commonly used items: `use nacre_kira::prelude::*;`.
pub mod prelude {
    pub use super::{GeneratedSound, GeneratedSoundPlugin, SoundStatus, ViewSound, ViewSoundStats};
}

/// Plays the generated sound of every [`ViewSound`] view. Add it after `NacrePlugin`.
#[derive(Default)]
pub struct GeneratedSoundPlugin {
    /// Jitter-buffer tuning.
    pub stream: StreamConfig,
}

impl Plugin for GeneratedSoundPlugin {
    fn build(&self, app: &mut App) {
        let (output, status) = SoundOutput::open(self.stream);
        app.insert_non_send(output)
            .insert_resource(GeneratedSound {
                volume: 1.0,
                muted: false,
                status,
            })
            .add_systems(PostUpdate, feed_sound.after(NacreSystems::Present));
    }
}

/// Whether sound can be heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoundStatus {
    /// A sound device is open.
    Playing,
    /// No sound device could be opened; the message says why. Chunks are dropped silently.
    NoDevice(String),
}

/// Volume and mute of all generated sound.
#[derive(Resource, Clone, Debug)]
pub struct GeneratedSound {
    /// Linear gain (1 = as generated). Changes are smoothed over about 10 ms.
    pub volume: f32,
    /// Silences all generated sound (smoothly), keeping the streams running.
    pub muted: bool,
    status: SoundStatus,
}

impl GeneratedSound {
    /// Whether a sound device is open.
    pub fn status(&self) -> &SoundStatus {
        &self.status
    }
}

/// Put this on a `WorldView` entity to hear its generated sound.
#[derive(Component, Clone, Debug)]
#[require(ViewSoundStats)]
pub struct ViewSound {
    /// Linear gain of this view, times [`GeneratedSound::volume`].
    pub volume: f32,
}

impl Default for ViewSound {
    fn default() -> Self {
        Self { volume: 1.0 }
    }
}

/// Live numbers about a view's sound stream.
#[derive(Component, Clone, Debug, Default)]
pub struct ViewSoundStats {
    /// Seconds of sound waiting in the jitter buffer (the sound's latency).
    pub queued_seconds: f32,
    /// Times the buffer ran dry (the model fell behind) and the sound faded out.
    pub underruns: u64,
    /// Chunks dropped because the audio thread was not taking them.
    pub chunks_dropped: u64,
}

/// What the game and the audio thread share about one stream.
#[derive(Debug, Default)]
struct Shared {
    /// Target gain, as `f32` bits.
    volume: AtomicU32,
    stopped: AtomicBool,
    /// Queued seconds, as `f32` bits.
    queued: AtomicU32,
    underruns: AtomicU64,
}

enum Packet {
    Samples { samples: Vec<f32>, channels: u16 },
    Flush,
}

/// How many chunks may wait for the audio thread (about 6 s at 20 chunks per second).
const PACKET_CAPACITY: usize = 128;

/// The kira sound data of one view's stream.
struct StreamData {
    packets: Receiver<Packet>,
    recycle: Sender<Vec<f32>>,
    shared: Arc<Shared>,
    buffer: StreamBuffer,
}

impl SoundData for StreamData {
    type Error = std::convert::Infallible;
    type Handle = ();

    fn into_sound(self) -> Result<(Box<dyn Sound>, ()), Self::Error> {
        Ok((
            Box::new(StreamSound {
                packets: self.packets,
                recycle: self.recycle,
                shared: self.shared,
                buffer: self.buffer,
                gain: 0.0,
            }),
            (),
        ))
    }
}

/// The sound on kira's audio thread: drains the packets once per callback and plays the jitter
/// buffer.
struct StreamSound {
    packets: Receiver<Packet>,
    recycle: Sender<Vec<f32>>,
    shared: Arc<Shared>,
    buffer: StreamBuffer,
    gain: f32,
}

impl Sound for StreamSound {
    fn on_start_processing(&mut self) {
        while let Ok(packet) = self.packets.try_recv() {
            match packet {
                Packet::Samples { samples, channels } => {
                    self.buffer.push(&samples, channels);
                    // Hand the allocation back so the audio thread never frees memory.
                    let _ = self.recycle.try_send(samples);
                }
                Packet::Flush => self.buffer.flush(),
            }
        }
        self.shared
            .queued
            .store(self.buffer.queued_seconds().to_bits(), Ordering::Relaxed);
        self.shared
            .underruns
            .store(self.buffer.counters().underruns, Ordering::Relaxed);
    }

    fn process(&mut self, out: &mut [kira::Frame], dt: f64, _info: &Info) {
        let rate = (1.0 / dt) as f32;
        let target = f32::from_bits(self.shared.volume.load(Ordering::Relaxed));
        // One-pole smoothing, ~10 ms: volume changes and mutes never click.
        let k = 1.0 / (0.01 * rate).max(1.0);
        for frame in out {
            let [l, r] = self.buffer.next_frame(rate);
            self.gain += (target - self.gain) * k;
            *frame = kira::Frame {
                left: l * self.gain,
                right: r * self.gain,
            };
        }
    }

    fn finished(&self) -> bool {
        self.shared.stopped.load(Ordering::Relaxed)
    }
}

/// The game's side of one stream.
struct ViewStream {
    packets: Sender<Packet>,
    recycle: Receiver<Vec<f32>>,
    shared: Arc<Shared>,
    sample_rate: u32,
    last_index: Option<u64>,
    chunks_dropped: u64,
}

impl ViewStream {
    fn send(&mut self, packet: Packet) {
        match self.packets.try_send(packet) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.chunks_dropped += 1;
            }
        }
    }
}

impl Drop for ViewStream {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }
}

/// The kira manager (on the main thread: cpal streams are not `Send` everywhere) and the
/// streams.
struct SoundOutput {
    manager: Option<AudioManager<DefaultBackend>>,
    config: StreamConfig,
    streams: HashMap<Entity, ViewStream>,
}

impl SoundOutput {
    fn open(config: StreamConfig) -> (Self, SoundStatus) {
        let (manager, status) =
            match AudioManager::<DefaultBackend>::new(AudioManagerSettings::default()) {
                Ok(m) => (Some(m), SoundStatus::Playing),
                Err(e) => {
                    let why = e.to_string();
                    warn!("nacre_kira: no sound device ({why}); generated sound is silent");
                    (None, SoundStatus::NoDevice(why))
                }
            };
        (
            Self {
                manager,
                config,
                streams: HashMap::new(),
            },
            status,
        )
    }

    fn stream(&mut self, view: Entity, sample_rate: u32) -> Option<&mut ViewStream> {
        if self
            .streams
            .get(&view)
            .is_some_and(|s| s.sample_rate != sample_rate)
        {
            self.streams.remove(&view);
        }
        if !self.streams.contains_key(&view) {
            let manager = self.manager.as_mut()?;
            let (packets_tx, packets) = bounded(PACKET_CAPACITY);
            let (recycle, recycle_rx) = bounded(PACKET_CAPACITY);
            let shared = Arc::new(Shared::default());
            let data = StreamData {
                packets,
                recycle,
                shared: shared.clone(),
                buffer: StreamBuffer::new(sample_rate, self.config),
            };
            if let Err(e) = manager.play(data) {
                warn!("nacre_kira: could not start the sound of view {view}: {e}");
                return None;
            }
            self.streams.insert(
                view,
                ViewStream {
                    packets: packets_tx,
                    recycle: recycle_rx,
                    shared,
                    sample_rate,
                    last_index: None,
                    chunks_dropped: 0,
                },
            );
        }
        self.streams.get_mut(&view)
    }
}

/// Sends every chunk of every heard view to its stream, and keeps volumes and statistics up to
/// date.
fn feed_sound(
    mut output: NonSendMut<SoundOutput>,
    settings: Res<GeneratedSound>,
    mut chunks: MessageReader<WorldViewAudio>,
    mut views: Query<(&ViewSound, &mut ViewSoundStats)>,
) {
    if output.manager.is_none() {
        chunks.clear();
        return;
    }
    for message in chunks.read() {
        let chunk = &message.chunk;
        if chunk.samples.is_empty() || !views.contains(message.view) {
            continue;
        }
        let Some(stream) = output.stream(message.view, chunk.sample_rate) else {
            continue;
        };
        // A frame index that does not follow the previous one means the session restarted or
        // was loaded: the old sound fades out before the new one plays.
        if stream
            .last_index
            .is_some_and(|last| message.index != last + 1)
        {
            stream.send(Packet::Flush);
        }
        stream.last_index = Some(message.index);
        let mut samples = stream.recycle.try_recv().unwrap_or_default();
        samples.clear();
        samples.extend_from_slice(&chunk.samples);
        stream.send(Packet::Samples {
            samples,
            channels: chunk.channels,
        });
    }
    let master = if settings.muted {
        0.0
    } else {
        settings.volume.max(0.0)
    };
    output.streams.retain(|entity, stream| {
        let Ok((sound, mut stats)) = views.get_mut(*entity) else {
            // The view is gone or no longer heard: dropping the stream stops its sound.
            return false;
        };
        let volume = master * sound.volume.max(0.0);
        stream
            .shared
            .volume
            .store(volume.to_bits(), Ordering::Relaxed);
        stats.queued_seconds = f32::from_bits(stream.shared.queued.load(Ordering::Relaxed));
        stats.underruns = stream.shared.underruns.load(Ordering::Relaxed);
        stats.chunks_dropped = stream.chunks_dropped;
        true
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bevy::prelude::*;
    use bevy_nacre::prelude::*;
    use bevy_nacre::reference::ReferenceWorld;

    use super::*;

    /// With or without a sound device, a heard view runs and its chunks are taken: queued in a
    /// stream where a device is open, dropped (after one warning at start-up) where none is.
    #[test]
    fn a_heard_view_runs_with_or_without_a_sound_device() {
        let mut app = App::new();
        app.add_plugins((
            MinimalPlugins,
            AssetPlugin::default(),
            ImagePlugin::default(),
            NacrePlugin {
                worker: WorkerConfig {
                    cpu_threads: 1,
                    ..Default::default()
                },
            },
            GeneratedSoundPlugin::default(),
        ));
        app.add_world_model("reference", |_| {
            Ok(Arc::new(ReferenceWorld::new(32, 24)) as Arc<dyn WorldModel>)
        });
        let image = app
            .world_mut()
            .resource_mut::<Assets<Image>>()
            .add(view_image(1, 1));
        let view = app
            .world_mut()
            .spawn((
                WorldView::new("reference").with_image(image),
                ViewSound::default(),
            ))
            .id();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && app
                .world()
                .get::<WorldViewStats>(view)
                .unwrap()
                .frames_presented
                < 10
        {
            app.update();
            std::thread::sleep(Duration::from_millis(5));
        }
        let stats = app.world().get::<WorldViewStats>(view).unwrap();
        assert!(stats.frames_presented >= 10, "{stats:?}");
        let status = app.world().resource::<GeneratedSound>().status().clone();
        let streams = app.world().non_send::<SoundOutput>().streams.len();
        match status {
            SoundStatus::Playing => assert_eq!(streams, 1),
            SoundStatus::NoDevice(why) => {
                assert!(!why.is_empty());
                assert_eq!(streams, 0);
            }
        }
        // Despawning the view ends its stream.
        app.world_mut().despawn(view);
        app.update();
        assert_eq!(app.world().non_send::<SoundOutput>().streams.len(), 0);
    }
}
