//! Compression ablation, a measurement only: would lossless compression of pages raise the
//! throughput a put or get sees? The engine does not compress; this module decides whether it
//! should, against the device bandwidth measured in the same run.
//!
//! Data (both **synthetic**, generated here):
//! - **KV-like bf16**: a `[tokens, channels]` bf16 tensor of gaussian values with a per-channel
//!   scale (log-normal, a few channels ~10x larger), the shape K/V activations have: the
//!   magnitude is set by the channel, the value within it looks like noise. Real tensors may
//!   compress somewhat differently; no real KV dump is shipped with this repository.
//! - **random bytes**: the incompressible bound.
//!
//! Each page (`unit` bytes, compressed independently so any page can be read alone) goes
//! through lz4 (`lz4_flex` block format) and zstd levels 1 and 3. Reported: the ratio
//! (uncompressed / compressed), and compress and decompress throughput in uncompressed bytes
//! per second on 1 thread and on 2 threads (this machine's cores). Each throughput is the best
//! of [`PASSES`] passes: the CPU is shared, and the best pass is the codec's own speed, which
//! is the figure most favourable to compressing.
//!
//! Effective throughput if the engine compressed = `min(device × ratio, codec throughput on
//! 2 threads)`: the device moves compressed bytes, the CPU must keep up. It ignores that the
//! engine's own CPU work (checksums, copies) competes for the same cores, so it is an upper
//! bound on what compression could give.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::device::DeviceLimit;
use crate::pages::fill_random;
use crate::units::fmt_bytes;

/// Passes per measurement; the best one is kept.
const PASSES: usize = 3;
/// Channels of the synthetic tensor: 8 KV heads x head_dim 128 (Llama-3-8B).
const CHANNELS: usize = 1024;

/// A data kind x codec.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CodecRow {
    pub data: String,
    pub codec: String,
    /// Uncompressed / compressed bytes.
    pub ratio: f64,
    pub compress_1t_bytes_per_s: f64,
    pub decompress_1t_bytes_per_s: f64,
    pub compress_2t_bytes_per_s: f64,
    pub decompress_2t_bytes_per_s: f64,
    /// `min(device write × ratio, compress on 2 threads)`.
    pub effective_put_bytes_per_s: f64,
    /// `min(device read × ratio, decompress on 2 threads)`.
    pub effective_get_bytes_per_s: f64,
}

/// The whole measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompressionReport {
    /// Bytes of each data kind.
    pub sample_bytes: u64,
    /// Bytes compressed independently (one page).
    pub unit_bytes: u64,
    pub device: DeviceLimit,
    pub rows: Vec<CodecRow>,
}

#[derive(Clone, Copy, Debug)]
enum Codec {
    Lz4,
    Zstd(i32),
}

impl Codec {
    fn name(self) -> String {
        match self {
            Self::Lz4 => "lz4".to_string(),
            Self::Zstd(l) => format!("zstd-{l}"),
        }
    }

    fn bound(self, n: usize) -> usize {
        match self {
            Self::Lz4 => lz4_flex::block::get_maximum_output_size(n),
            Self::Zstd(_) => zstd::zstd_safe::compress_bound(n),
        }
    }
}

/// One thread's pages and its output buffers, owned so threads never share a slot.
struct Share<'a> {
    units: &'a [&'a [u8]],
    comp: Vec<Vec<u8>>,
    lens: Vec<usize>,
    plain: Vec<Vec<u8>>,
}

impl<'a> Share<'a> {
    fn new(units: &'a [&'a [u8]], codec: Codec) -> Self {
        Self {
            units,
            comp: units
                .iter()
                .map(|u| vec![0u8; codec.bound(u.len())])
                .collect(),
            lens: vec![0; units.len()],
            plain: units.iter().map(|u| vec![0u8; u.len()]).collect(),
        }
    }

    fn compress(&mut self, codec: Codec) -> anyhow::Result<()> {
        match codec {
            Codec::Lz4 => {
                for ((u, o), l) in self.units.iter().zip(&mut self.comp).zip(&mut self.lens) {
                    *l = lz4_flex::block::compress_into(u, o)
                        .map_err(|e| anyhow::anyhow!("lz4 compress: {e}"))?;
                }
            }
            Codec::Zstd(level) => {
                // One context per thread, reused across pages, as an engine would keep it.
                let mut c = zstd::bulk::Compressor::new(level)?;
                for ((u, o), l) in self.units.iter().zip(&mut self.comp).zip(&mut self.lens) {
                    *l = c.compress_to_buffer(u, o)?;
                }
            }
        }
        Ok(())
    }

    fn decompress(&mut self, codec: Codec) -> anyhow::Result<()> {
        let mut zstd_ctx = match codec {
            Codec::Zstd(_) => Some(zstd::bulk::Decompressor::new()?),
            Codec::Lz4 => None,
        };
        for ((c, &n), o) in self.comp.iter().zip(&self.lens).zip(&mut self.plain) {
            let got = match zstd_ctx.as_mut() {
                None => lz4_flex::block::decompress_into(&c[..n], o)
                    .map_err(|e| anyhow::anyhow!("lz4 decompress: {e}"))?,
                Some(d) => d.decompress_to_buffer(&c[..n], o)?,
            };
            anyhow::ensure!(got == o.len(), "decompressed {got} of {} bytes", o.len());
        }
        Ok(())
    }
}

/// Runs `f` on every share at once, one thread each; returns the wall seconds.
fn timed(
    shares: &mut [Share<'_>],
    f: &(dyn Fn(&mut Share<'_>) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<f64> {
    let start = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = shares.iter_mut().map(|sh| s.spawn(move || f(sh))).collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("codec thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(start.elapsed().as_secs_f64())
}

/// Best-of-[`PASSES`] compress and decompress throughput on `threads` threads, and the ratio.
fn throughput(codec: Codec, units: &[&[u8]], threads: usize) -> anyhow::Result<(f64, f64, f64)> {
    let total: usize = units.iter().map(|u| u.len()).sum();
    let share = units.len().div_ceil(threads).max(1);
    let mut shares: Vec<Share<'_>> = units.chunks(share).map(|c| Share::new(c, codec)).collect();
    let (mut best_c, mut best_d) = (f64::MAX, f64::MAX);
    for _ in 0..PASSES {
        best_c = best_c.min(timed(&mut shares, &|s| s.compress(codec))?);
        best_d = best_d.min(timed(&mut shares, &|s| s.decompress(codec))?);
    }
    // Lossless or it does not count.
    for s in &shares {
        for (u, p) in s.units.iter().zip(&s.plain) {
            anyhow::ensure!(*u == &p[..], "{} did not round-trip", codec.name());
        }
    }
    let compressed: usize = shares.iter().flat_map(|s| s.lens.iter()).sum();
    let n = total as f64;
    Ok((n / compressed.max(1) as f64, n / best_c, n / best_d))
}

/// Synthetic KV-like bf16 tensor (see the module docs), `bytes` long.
pub fn kv_like_bf16(bytes: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        // 53 random bits into (0, 1].
        ((s >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    let mut gauss = move || {
        // Box-Muller; one of the pair is enough here.
        let (u1, u2) = (uniform(), uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    // Per-channel scale: log-normal around 1, so a few channels are ~10x the typical one
    // (the outlier channels of K activations).
    let scales: Vec<f64> = (0..CHANNELS).map(|_| (0.8 * gauss()).exp()).collect();
    let mut out = Vec::with_capacity(bytes);
    let mut c = 0;
    while out.len() + 2 <= bytes {
        let v = (gauss() * scales[c]) as f32;
        out.extend_from_slice(&f32_to_bf16(v).to_le_bytes());
        c = (c + 1) % CHANNELS;
    }
    out.resize(bytes, 0);
    out
}

/// Round-to-nearest-even f32 -> bf16 (what torch's `.to(torch.bfloat16)` does); the inputs
/// here are finite.
fn f32_to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    let round = 0x7FFF + ((b >> 16) & 1);
    ((b + round) >> 16) as u16
}

/// Measures every codec on both data kinds against `device`, with `unit`-byte pages.
///
/// # Errors
/// A codec fails or does not round-trip.
pub fn run(
    sample_bytes: u64,
    unit_bytes: u64,
    device: DeviceLimit,
) -> anyhow::Result<CompressionReport> {
    let bytes = usize::try_from(sample_bytes)?;
    let unit = usize::try_from(unit_bytes)?;
    anyhow::ensure!(
        unit >= 4096 && bytes >= unit,
        "compression needs pages of at least 4 KiB and a sample of at least one page"
    );
    let mut random = vec![0u8; bytes];
    fill_random(&mut random, 0xC0DE);
    let data = [
        ("KV-like bf16 (synthetic)", kv_like_bf16(bytes, 0x5EED)),
        ("random bytes", random),
    ];
    let codecs = [Codec::Lz4, Codec::Zstd(1), Codec::Zstd(3)];
    let pb = ProgressBar::new((data.len() * codecs.len()) as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{:>28} {{bar:30}} {{pos}}/{{len}} {{msg}}",
            format!("compression {}", fmt_bytes(sample_bytes))
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for (name, bytes) in &data {
        let units: Vec<&[u8]> = bytes.chunks(unit).collect();
        for codec in codecs {
            pb.set_message(format!("{name}, {}", codec.name()));
            let (ratio, c1, d1) = throughput(codec, &units, 1)?;
            let (_, c2, d2) = throughput(codec, &units, 2)?;
            rows.push(CodecRow {
                data: (*name).to_string(),
                codec: codec.name(),
                ratio,
                compress_1t_bytes_per_s: c1,
                decompress_1t_bytes_per_s: d1,
                compress_2t_bytes_per_s: c2,
                decompress_2t_bytes_per_s: d2,
                effective_put_bytes_per_s: (device.write_bytes_per_s * ratio).min(c2),
                effective_get_bytes_per_s: (device.read_bytes_per_s * ratio).min(d2),
            });
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(CompressionReport {
        sample_bytes,
        unit_bytes,
        device,
        rows,
    })
}

/// The compression table as markdown, with the verdict per data kind.
pub fn table(r: &CompressionReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let gb = |x: f64| format!("{:.2}", x / 1e9);
    let _ = writeln!(
        s,
        "\n**Compression** (measurement only, the engine does not compress; {} of each data kind \
         in {} pages compressed independently; best of {PASSES} passes; device in the same run: \
         write {} GB/s, read {} GB/s; effective = min(device x ratio, codec on 2 threads))\n",
        fmt_bytes(r.sample_bytes),
        fmt_bytes(r.unit_bytes),
        gb(r.device.write_bytes_per_s),
        gb(r.device.read_bytes_per_s)
    );
    let _ = writeln!(
        s,
        "| data | codec | ratio | compress GB/s 1 / 2 threads | decompress GB/s 1 / 2 threads | effective put GB/s | vs no compression | effective get GB/s | vs no compression |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for x in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {} / {} | {} / {} | {} | {:.2}x | {} | {:.2}x |",
            x.data,
            x.codec,
            x.ratio,
            gb(x.compress_1t_bytes_per_s),
            gb(x.compress_2t_bytes_per_s),
            gb(x.decompress_1t_bytes_per_s),
            gb(x.decompress_2t_bytes_per_s),
            gb(x.effective_put_bytes_per_s),
            x.effective_put_bytes_per_s / r.device.write_bytes_per_s,
            gb(x.effective_get_bytes_per_s),
            x.effective_get_bytes_per_s / r.device.read_bytes_per_s,
        );
    }
    let helps = |f: &dyn Fn(&CodecRow) -> bool| {
        r.rows
            .iter()
            .filter(|x| f(x))
            .map(|x| format!("{} on {}", x.codec, x.data))
            .collect::<Vec<_>>()
    };
    let put = helps(&|x| x.effective_put_bytes_per_s > r.device.write_bytes_per_s);
    let get = helps(&|x| x.effective_get_bytes_per_s > r.device.read_bytes_per_s);
    let say = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        s,
        "\nWould raise put throughput: {}. Would raise get throughput: {}.",
        say(put),
        say(get)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_known_values() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        assert_eq!(f32_to_bf16(-2.0), 0xC000);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
    }

    #[test]
    fn codecs_round_trip_and_random_does_not_compress() {
        let device = DeviceLimit {
            write_bytes_per_s: 1e9,
            read_bytes_per_s: 1e9,
            bytes: 0,
        };
        let r = run(256 << 10, 64 << 10, device).expect("runs");
        assert_eq!(r.rows.len(), 6);
        for x in &r.rows {
            assert!(x.ratio > 0.9, "{x:?}");
            if x.data == "random bytes" {
                assert!(x.ratio < 1.01, "random bytes compressed: {x:?}");
            }
        }
        assert!(table(&r).contains("| KV-like bf16 (synthetic) | zstd-3 |"));
    }
}
