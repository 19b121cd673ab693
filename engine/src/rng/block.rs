//! Philox-4x32-10 of 16 consecutive elements at once: the 64 words of one block of
//! uniforms (`RngKey::uniform` of indices `64 b .. 64 b + 64` in order, see
//! [`super::uniform_position`]), in structure-of-arrays form so that SIMD lanes hold
//! elements and no transposition is needed.
//!
//! Hot loops are compiled once per instruction set (portable, AVX2, AVX-512) and call
//! [`words`] with the matching [`Isa`] constant; the explicit AVX2/AVX-512 forms exist
//! because the 32 x 32 -> 64-bit products of Philox are what compilers vectorise worst
//! (they widen to 64-bit lanes and shuffle).

use super::{RngKey, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1};

/// The instruction sets a kernel can be compiled for (used as const generic values).
pub type Isa = u8;
pub const PORTABLE: Isa = 0;
pub const AVX2: Isa = 1;
pub const AVX512: Isa = 2;

/// The best instruction set of this CPU for the kernels here (detected once). The
/// environment variable `EBM_CPU_ISA=avx2` or `=portable` (any case) caps it, never above
/// what the CPU has, so that the narrower kernels can be tested and timed on a wider CPU;
/// other values leave it uncapped.
pub fn detect() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let asked = std::env::var("EBM_CPU_ISA").map(|v| v.to_ascii_lowercase());
        let cap = match asked.as_deref() {
            Ok("portable") => PORTABLE,
            Ok("avx2") => AVX2,
            _ => AVX512,
        };
        cpu_isa().min(cap)
    })
}

/// The best instruction set this CPU has.
fn cpu_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return AVX512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return AVX2;
        }
    }
    PORTABLE
}

/// The 64 words of uniform block `block` of `key`: `out[w][l]` is word `w` of element
/// `16 block + l`, i.e. the bits of uniform `64 block + 16 w + l`.
///
/// # Safety
/// With `ISA` = [`AVX2`] or [`AVX512`] the caller must run on a CPU with that instruction
/// set (as reported by [`detect`]); call it from a function compiled for it so it inlines.
#[inline(always)]
pub unsafe fn words<const ISA: Isa>(key: &RngKey, block: u32) -> [[u32; 16]; 4] {
    let first = block.wrapping_mul(16);
    #[cfg(target_arch = "x86_64")]
    {
        if ISA == AVX512 {
            let [words] = philox16_avx512::<1>(key, first);
            return words;
        }
        if ISA == AVX2 {
            return philox16_avx2(key, first);
        }
    }
    philox16(key, first)
}

/// The words of four consecutive blocks, `block .. block + 4` ([`words`] of each): with
/// AVX-512 the four are computed side by side, so their rounds (each waits on the last
/// one's multiplies) overlap.
///
/// # Safety
/// As [`words`].
#[inline(always)]
pub unsafe fn words_x4<const ISA: Isa>(key: &RngKey, block: u32) -> [[[u32; 16]; 4]; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if ISA == AVX512 {
            return philox16_avx512::<4>(key, block.wrapping_mul(16));
        }
    }
    std::array::from_fn(|b| words::<ISA>(key, block.wrapping_add(b as u32)))
}

/// Portable Philox-4x32-10 of elements `first .. first + 16`.
#[inline(always)]
fn philox16(key: &RngKey, first: u32) -> [[u32; 16]; 4] {
    const N: usize = 16;
    let mut c0: [u32; N] = std::array::from_fn(|lane| first.wrapping_add(lane as u32));
    let mut c1 = [key.step as u32; N];
    let mut c2 = [(key.step >> 32) as u32; N];
    let mut c3 = [key.stream; N];
    let (mut k0, mut k1) = (key.seed as u32, (key.seed >> 32) as u32);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        for lane in 0..N {
            let p0 = PHILOX_M0 as u64 * c0[lane] as u64;
            let p1 = PHILOX_M1 as u64 * c2[lane] as u64;
            let n0 = (p1 >> 32) as u32 ^ c1[lane] ^ k0;
            let n2 = (p0 >> 32) as u32 ^ c3[lane] ^ k1;
            c0[lane] = n0;
            c1[lane] = p1 as u32;
            c2[lane] = n2;
            c3[lane] = p0 as u32;
        }
    }
    [c0, c1, c2, c3]
}

/// `philox16` in AVX2: the products of even lanes come from one `vpmuludq`, those of odd
/// lanes from a second after a 64-bit shift, and blends put the high and low halves back
/// in lane order (7 instructions per 8 products).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn philox16_avx2(key: &RngKey, first: u32) -> [[u32; 16]; 4] {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn mul_hi_lo(a: __m256i, m: __m256i) -> (__m256i, __m256i) {
        let even = _mm256_mul_epu32(a, m);
        let odd = _mm256_mul_epu32(_mm256_srli_epi64::<32>(a), m);
        let hi = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd);
        let lo = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        (hi, lo)
    }
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn set(x: u32) -> __m256i {
        _mm256_set1_epi32(x as i32)
    }
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let c0_first = _mm256_add_epi32(set(first), lanes);
    let mut c0 = [c0_first, _mm256_add_epi32(c0_first, set(8))];
    let mut c1 = [set(key.step as u32); 2];
    let mut c2 = [set((key.step >> 32) as u32); 2];
    let mut c3 = [set(key.stream); 2];
    let (m0, m1) = (set(PHILOX_M0), set(PHILOX_M1));
    let (mut k0, mut k1) = (key.seed as u32, (key.seed >> 32) as u32);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let (vk0, vk1) = (set(k0), set(k1));
        for h in 0..2 {
            let (hi0, lo0) = mul_hi_lo(c0[h], m0);
            let (hi1, lo1) = mul_hi_lo(c2[h], m1);
            c0[h] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[h]), vk0);
            c2[h] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[h]), vk1);
            c1[h] = lo1;
            c3[h] = lo0;
        }
    }
    let mut out = [[0u32; 16]; 4];
    for (o, c) in out.iter_mut().zip([c0, c1, c2, c3]) {
        _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, c[0]);
        _mm256_storeu_si256(o.as_mut_ptr().add(8) as *mut __m256i, c[1]);
    }
    out
}

/// `philox16` in AVX-512 for `N` consecutive blocks (elements `first .. first + 16 N`):
/// the same even/odd products and masked blends, 16 lanes per vector, the `N` blocks'
/// rounds interleaved.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn philox16_avx512<const N: usize>(key: &RngKey, first: u32) -> [[[u32; 16]; 4]; N] {
    use std::arch::x86_64::*;
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn mul_hi_lo(a: __m512i, m: __m512i) -> (__m512i, __m512i) {
        let even = _mm512_mul_epu32(a, m);
        let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(a), m);
        let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(even), odd);
        let lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
        (hi, lo)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn set(x: u32) -> __m512i {
        _mm512_set1_epi32(x as i32)
    }
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut c0: [__m512i; N] =
        std::array::from_fn(|b| _mm512_add_epi32(set(first.wrapping_add(16 * b as u32)), lanes));
    let mut c1 = [set(key.step as u32); N];
    let mut c2 = [set((key.step >> 32) as u32); N];
    let mut c3 = [set(key.stream); N];
    let (m0, m1) = (set(PHILOX_M0), set(PHILOX_M1));
    let (mut k0, mut k1) = (key.seed as u32, (key.seed >> 32) as u32);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        for b in 0..N {
            let (hi0, lo0) = mul_hi_lo(c0[b], m0);
            let (hi1, lo1) = mul_hi_lo(c2[b], m1);
            c0[b] = _mm512_xor_si512(_mm512_xor_si512(hi1, c1[b]), set(k0));
            c2[b] = _mm512_xor_si512(_mm512_xor_si512(hi0, c3[b]), set(k1));
            c1[b] = lo1;
            c3[b] = lo0;
        }
    }
    let mut out = [[[0u32; 16]; 4]; N];
    for (b, block) in out.iter_mut().enumerate() {
        for (o, c) in block.iter_mut().zip([c0[b], c1[b], c2[b], c3[b]]) {
            _mm512_storeu_si512(o.as_mut_ptr() as *mut __m512i, c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set this CPU has gives the scalar definition, word for word,
    /// including counters that wrap around 2^32.
    #[test]
    fn blocks_equal_the_scalar_uniforms() {
        let key = RngKey::new(0x1234_5678_9abc, 7, (1 << 33) + 5);
        let check = |got: [[u32; 16]; 4], block: u32| {
            for (w, lanes) in got.iter().enumerate() {
                for (l, &word) in lanes.iter().enumerate() {
                    let element = block.wrapping_mul(16).wrapping_add(l as u32);
                    assert_eq!(
                        word,
                        key.words(element)[w],
                        "block {block} word {w} lane {l}"
                    );
                }
            }
            // and as uniforms of consecutive indices (blocks of u32 indices only)
            for i in (0..64u32).filter(|_| block < 1 << 26) {
                let index = block.wrapping_mul(64).wrapping_add(i);
                let bits = got[(i / 16) as usize][(i % 16) as usize];
                assert_eq!(super::super::uniform_from_bits(bits), key.uniform(index));
            }
        };
        for block in [0u32, 1, 13, (1 << 26) - 1, u32::MAX / 16] {
            // SAFETY: each instruction set is only run where detect() reports it.
            unsafe {
                check(words::<PORTABLE>(&key, block), block);
                if detect() >= AVX2 {
                    check(words::<AVX2>(&key, block), block);
                }
                if detect() >= AVX512 {
                    check(words::<AVX512>(&key, block), block);
                }
                for (b, words) in words_x4::<PORTABLE>(&key, block).into_iter().enumerate() {
                    check(words, block.wrapping_add(b as u32));
                }
                if detect() >= AVX512 {
                    let four = words_x4::<AVX512>(&key, block);
                    for (b, words) in four.into_iter().enumerate() {
                        check(words, block.wrapping_add(b as u32));
                    }
                }
            }
        }
    }
}
