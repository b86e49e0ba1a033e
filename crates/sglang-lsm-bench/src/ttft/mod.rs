//! A TTFT **model** (not a measurement): time to first token = time to load the prefix-hit pages
//! from the disk tier + time to prefill the tokens that missed.
//!
//! Real end-to-end TTFT needs a GPU and a serving engine. This model isolates what the storage
//! engine controls (how fast hit pages arrive, and so how many hits beat SGLang's prefetch
//! deadline) and prices the rest with a fixed prefill throughput per model profile. Every
//! number it produces is labelled "model" in reports.
//!
//! Simplifications, stated so readers can judge the figures:
//! - Prefill cost is linear in missed tokens. Real prefill of a suffix also attends over the
//!   cached prefix (quadratic term), which this ignores; long prompts are under-priced.
//! - Loading and prefill do not overlap (SGLang prefetches while the request waits, then
//!   prefills), and one request's prefetch has the device to itself.
//! - Pages load in prefix order at a constant bandwidth, so the first `k` pages arrive at
//!   `k / n` of the total load time.

use serde::{Deserialize, Serialize};

/// SGLang's prefetch timeout for the `timeout` stop policy, in seconds:
/// `min(30, 2.0 + 0.1 * tokens / 1024)`, where `tokens` is the number of tokens being prefetched
/// (SGLang scales the deadline by the pages of the prefetch operation; defaults from
/// REFERENCE.md §2). Pages that arrive after it are dropped and recomputed.
pub fn prefetch_timeout_s(prefetch_tokens: u64) -> f64 {
    const BASE_S: f64 = 2.0;
    const PER_KI_TOKEN_S: f64 = 0.1;
    const CAP_S: f64 = 30.0;
    (BASE_S + PER_KI_TOKEN_S * prefetch_tokens as f64 / 1024.0).min(CAP_S)
}

/// A model's KV-cache footprint and prefill speed.
///
/// **KV bytes per token** come from the public architecture configs (Hugging Face
/// `config.json`), bf16 (2 bytes):
/// - MHA/GQA: `2 (K and V) × layers × kv_heads × head_dim × 2 bytes`.
/// - MLA: `layers × (kv_lora_rank + qk_rope_head_dim) × 2 bytes` (one latent vector per token
///   per layer, no separate K and V).
///
/// **Prefill throughput** is a derivation, not a benchmark: an assumed NVIDIA H100 SXM with
/// 989 TFLOPS dense bf16 peak (NVIDIA H100 datasheet), at an assumed 50% model FLOPs
/// utilisation for long dense prefills (30% for MoE, whose small per-expert GEMMs use the GPU
/// less well), with `2 × active parameters` FLOPs per token (the standard forward-pass count,
/// attention FLOPs ignored). Change the profile, not the code, when a measured figure exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelProfile {
    pub name: &'static str,
    pub kv_bytes_per_token: u64,
    pub prefill_tokens_per_s: f64,
    /// Where the numbers come from, in one line, for reports.
    pub source: &'static str,
}

/// The assumed GPU's dense bf16 peak, FLOP/s.
pub const H100_BF16_PEAK_FLOPS: f64 = 989e12;
/// Assumed utilisation for dense prefill.
pub const DENSE_MFU: f64 = 0.5;
/// Assumed utilisation for MoE prefill.
pub const MOE_MFU: f64 = 0.3;

/// Prefill tokens/s from the FLOPs rule: `mfu × peak / (2 × active_params)`.
pub fn derived_prefill_tokens_per_s(active_params: f64, mfu: f64) -> f64 {
    mfu * H100_BF16_PEAK_FLOPS / (2.0 * active_params)
}

/// Built-in profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Llama-3-8B: 32 layers, 8 KV heads, head_dim 128 -> 128 KiB/token; 8.03B parameters.
    #[value(name = "llama3-8b")]
    Llama3_8b,
    /// Qwen3-32B: 64 layers, 8 KV heads, head_dim 128 -> 256 KiB/token; 32.8B parameters.
    #[value(name = "qwen3-32b")]
    Qwen3_32b,
    /// DeepSeek-V2-Lite (MLA): 27 layers, kv_lora_rank 512 + rope 64 -> 31,104 B/token;
    /// 15.7B parameters, 2.4B active.
    #[value(name = "deepseek-v2-lite")]
    DeepseekV2Lite,
}

impl ModelKind {
    pub const ALL: [ModelKind; 3] = [Self::Llama3_8b, Self::Qwen3_32b, Self::DeepseekV2Lite];

    pub fn profile(self) -> ModelProfile {
        match self {
            Self::Llama3_8b => ModelProfile {
                name: "llama3-8b",
                kv_bytes_per_token: 2 * 32 * 8 * 128 * 2,
                prefill_tokens_per_s: derived_prefill_tokens_per_s(8.03e9, DENSE_MFU),
                source: "meta-llama/Meta-Llama-3-8B config.json (32 layers, 8 KV heads, head_dim 128, bf16); \
                         prefill = 0.5 x 989 TFLOPS (H100 SXM) / (2 x 8.03e9) FLOP/token",
            },
            Self::Qwen3_32b => ModelProfile {
                name: "qwen3-32b",
                kv_bytes_per_token: 2 * 64 * 8 * 128 * 2,
                prefill_tokens_per_s: derived_prefill_tokens_per_s(32.8e9, DENSE_MFU),
                source: "Qwen/Qwen3-32B config.json (64 layers, 8 KV heads, head_dim 128, bf16); \
                         prefill = 0.5 x 989 TFLOPS (H100 SXM) / (2 x 32.8e9) FLOP/token",
            },
            Self::DeepseekV2Lite => ModelProfile {
                name: "deepseek-v2-lite",
                kv_bytes_per_token: 27 * (512 + 64) * 2,
                prefill_tokens_per_s: derived_prefill_tokens_per_s(2.4e9, MOE_MFU),
                source: "deepseek-ai/DeepSeek-V2-Lite config.json (27 layers, MLA kv_lora_rank 512 + \
                         qk_rope_head_dim 64, bf16); prefill = 0.3 x 989 TFLOPS (H100 SXM) / (2 x 2.4e9 active) FLOP/token",
            },
        }
    }
}

/// What the model says about one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TtftOutcome {
    /// Leading hit blocks whose load finished before the prefetch deadline.
    pub timely_hit_blocks: usize,
    /// Tokens those blocks hold.
    pub timely_hit_tokens: u64,
    /// Modelled time spent loading (the full load, or the deadline if it was missed).
    pub load_s: f64,
    /// Modelled prefill time of the tokens not served by timely hits.
    pub prefill_s: f64,
    /// `load_s + prefill_s`: the TTFT model.
    pub ttft_s: f64,
}

/// Applies the model to one request.
///
/// `hit_block_tokens[i]` is the token count of the i-th prefix-hit block, `hit_load_s` the
/// modelled time to load all of them, `input_tokens` the prompt length. Blocks are loaded in
/// order at a constant rate; those finishing after [`prefetch_timeout_s`] of the hit tokens
/// are not timely, SGLang stops waiting at the deadline and prefills everything after the
/// timely prefix.
pub fn model_request(
    profile: &ModelProfile,
    input_tokens: u64,
    hit_block_tokens: &[u64],
    hit_load_s: f64,
) -> TtftOutcome {
    let hit_tokens: u64 = hit_block_tokens.iter().sum();
    let n = hit_block_tokens.len();
    let deadline_s = prefetch_timeout_s(hit_tokens);
    let (timely_blocks, load_s) = if n == 0 {
        (0, 0.0)
    } else if hit_load_s <= deadline_s {
        (n, hit_load_s)
    } else {
        // Block i (0-based) finishes at (i + 1) / n of the load; count those within the deadline.
        let per_block_s = hit_load_s / n as f64;
        let timely = ((deadline_s / per_block_s).floor() as usize).min(n);
        (timely, deadline_s)
    };
    let timely_tokens: u64 = hit_block_tokens[..timely_blocks].iter().sum();
    let missed_tokens = input_tokens.saturating_sub(timely_tokens);
    let prefill_s = missed_tokens as f64 / profile.prefill_tokens_per_s;
    TtftOutcome {
        timely_hit_blocks: timely_blocks,
        timely_hit_tokens: timely_tokens,
        load_s,
        prefill_s,
        ttft_s: load_s + prefill_s,
    }
}

/// The `q` quantile (0..=1) of `values` by nearest rank; 0 for an empty slice.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn kv_bytes_per_token_match_the_architectures() {
        assert_eq!(ModelKind::Llama3_8b.profile().kv_bytes_per_token, 128 << 10);
        assert_eq!(ModelKind::Qwen3_32b.profile().kv_bytes_per_token, 256 << 10);
        assert_eq!(
            ModelKind::DeepseekV2Lite.profile().kv_bytes_per_token,
            31_104
        );
    }

    #[test]
    fn derived_prefill_throughput() {
        // 0.5 * 989e12 / (2 * 8.03e9) = 30,790.8 tokens/s
        let t = ModelKind::Llama3_8b.profile().prefill_tokens_per_s;
        assert!((t - 30_790.8).abs() < 1.0, "{t}");
        // A bigger model prefills proportionally slower.
        let q = ModelKind::Qwen3_32b.profile().prefill_tokens_per_s;
        assert!((t / q - 32.8 / 8.03).abs() < 1e-9);
    }

    #[test]
    fn prefetch_timeout_formula() {
        assert!(close(prefetch_timeout_s(0), 2.0));
        assert!(close(prefetch_timeout_s(10_240), 3.0));
        assert!(close(prefetch_timeout_s(1024 * 280), 30.0));
        assert!(close(prefetch_timeout_s(10_000_000), 30.0));
    }

    #[test]
    fn all_hits_timely_when_load_beats_deadline() {
        let p = ModelProfile {
            name: "t",
            kv_bytes_per_token: 1,
            prefill_tokens_per_s: 1000.0,
            source: "test",
        };
        // 3 hit blocks of 512 tokens, load 1.0 s (deadline 2.15 s); 2000-token prompt.
        let o = model_request(&p, 2000, &[512, 512, 512], 1.0);
        assert_eq!(o.timely_hit_blocks, 3);
        assert_eq!(o.timely_hit_tokens, 1536);
        assert!(close(o.load_s, 1.0));
        assert!(close(o.prefill_s, (2000.0 - 1536.0) / 1000.0));
        assert!(close(o.ttft_s, 1.0 + 0.464));
    }

    #[test]
    fn late_blocks_are_recomputed_and_the_deadline_is_paid() {
        let p = ModelProfile {
            name: "t",
            kv_bytes_per_token: 1,
            prefill_tokens_per_s: 1000.0,
            source: "test",
        };
        // 4 hit blocks of 256 tokens = 1024 tokens: deadline 2.1 s. Loading them takes 4.0 s,
        // 1 s per block, so the blocks finishing at 1 s and 2 s are timely.
        let o = model_request(&p, 3000, &[256, 256, 256, 256], 4.0);
        assert_eq!(o.timely_hit_blocks, 2);
        assert_eq!(o.timely_hit_tokens, 512);
        assert!(close(o.load_s, 2.1));
        assert!(close(o.prefill_s, 2.488));
    }

    #[test]
    fn no_hits_is_pure_prefill() {
        let p = ModelKind::Llama3_8b.profile();
        let o = model_request(&p, 30_790, &[], 0.0);
        assert_eq!(o.timely_hit_blocks, 0);
        assert!(close(o.load_s, 0.0));
        assert!((o.ttft_s - 30_790.0 / p.prefill_tokens_per_s).abs() < 1e-9);
    }

    #[test]
    fn quantile_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.99), 5.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
