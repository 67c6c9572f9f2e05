//! Column codecs of the engine's data files: a block's timestamps, or the values of one
//! field in a block, become one self-describing payload.
//!
//! A payload is one codec tag byte, then that codec's bytes. The number of values is
//! not in the payload: the block header holds it and the decoder takes it as `count`.
//! Each encoder tries the codecs that apply to its input and keeps the smallest payload
//! (ties go to the cheaper one to decode), so a block never costs more than its raw
//! form plus the tag byte. Decoders trust nothing in a payload: they return a
//! [`CodecError`] rather than panic, loop or allocate past `count` and the payload's
//! size, and they reject bytes left over after the last value.
//!
//! Notation: `varint` is unsigned LEB128 (at most 10 bytes); `zz(x)` is the zig-zag map
//! of an i64 onto a u64 (0, -1, 1, -2 ... to 0, 1, 2, 3 ...); `le64` is 8 bytes little
//! endian. Deltas are wrapping (`v[i] - v[i-1]` modulo 2^64), so every codec is lossless
//! for any sequence, ordered or not. Bit streams are least significant bit first: a
//! field of w bits is written lowest bit first, stream bit k is bit `k % 8` of byte
//! `k / 8`, and the last byte is padded (the padding is ignored). Parts marked
//! "(count >= k)" are present only when the block has at least k values.
//!
//! Timestamps:
//! - `0x01 ts-raw`: `le64` per value.
//! - `0x02 ts-rle`: (count >= 1) `le64` first value; (count >= 2) `varint zz(delta)`;
//!   value i is `first + i * delta`. For regular intervals: about 14 bytes per block
//!   whatever its length.
//! - `0x03 ts-dod`: (count >= 1) `le64` first; (count >= 2) `varint zz(first delta)`;
//!   (count >= 3) three width bytes w1, w2, w3 (each <= 64), then a bit stream with one
//!   code per delta-of-delta d: `0` for d = 0; `10` then zz(d) in w1 bits; `110` and w2
//!   bits; `1110` and w3 bits; `1111` and 64 bits. These are Gorilla's classes (VLDB
//!   2015) with the widths chosen per block (the encoder picks the three that minimize
//!   the block's bits), so nanosecond stamps with a few ms of jitter pay for the jitter's
//!   bits only where there is jitter.
//! - `0x04 ts-pack`: the int-pack layout below (first value, smallest delta, width,
//!   fixed-width offsets of the deltas): smaller than ts-dod when every stamp jitters
//!   (a delta spans the jitter twice, a delta-of-delta four times).
//!
//! Floats (always bit-exact: -0.0, NaN payloads, subnormals and infinities included):
//! - `0x10 float-raw`: `le64` of the bits per value.
//! - `0x11 float-decimal`: one byte e (0..=18), then an integer payload (tag 0x20, 0x21
//!   or 0x22, below) of integers i; each value is `i as f64 / 10^e`. The encoder uses it
//!   only when that division gives back every value bit for bit, with the smallest such
//!   e (a block holding -0.0, NaN or an infinity never qualifies).
//! - `0x12 float-xor`: (count >= 1) `le64` first bits, then a bit stream with one code
//!   per following value, x being its bits XOR the previous value's: `0` for x = 0;
//!   `10` then the N bits of `x >> (64 - L - N)`, L and N being the current window's
//!   leading zeros and length; `11`, L in 6 bits, N - 1 in 6 bits, then the N bits of
//!   `x >> (64 - L - N)`: that (L, N) becomes the window. The first window is L = 0,
//!   N = 64.
//!
//! Integers (and unsigned, on the values' bits read as i64):
//! - `0x20 int-raw` / `0x30 uint-raw`: `le64` per value.
//! - `0x21 int-pack` / `0x31 uint-pack`: (count >= 1) `varint zz(first)`; (count >= 2)
//!   `varint zz(m)`, m being the smallest delta, one width byte w (<= 64), then count - 1
//!   fields of w bits: each delta minus m (wrapping, as u64). w = 0, and no bit stream,
//!   when all deltas are equal (the run-length case).
//! - `0x22 int-varint` / `0x32 uint-varint`: `varint zz(first)`, then `varint zz(delta)`
//!   per following value.
//!
//! Booleans:
//! - `0x40 bool-pack`: `ceil(count / 8)` bytes, value i in bit `i % 8` of byte `i / 8`.
//! - `0x41 bool-rle`: (count >= 1) one byte, the first value (0 or 1); then the `varint`
//!   length (>= 1) of every run but the last, the runs alternating values; the last run
//!   is what is left of count.
//!
//! Strings:
//! - `0x50 str-raw`: per value `varint len`, then its bytes.
//! - `0x51 str-dict`: `varint n`, then the n distinct strings in order of first use
//!   (each `varint len` and bytes), then a bit stream of count indices into them of
//!   `bits(n - 1)` bits each (no bit stream when n = 1). Wins when a field holds few
//!   distinct values (statuses, hosts).
//!
//! Tag 0 is no codec, so a zeroed page never decodes.

use std::collections::HashMap;

/// Failures decoding a block payload (from disk: never trust it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The payload ends before its last value.
    #[error("block payload ends before its last value: the data file is truncated or corrupt")]
    Truncated,
    /// The tag is no codec of the column's type.
    #[error(
        "codec tag {0:#04x} ({name}) does not decode this column type: the data file is \
         corrupt or was written by a newer version",
        name = codec_name(*.0)
    )]
    UnknownCodec(u8),
    /// The payload breaks its codec's rules.
    #[error("corrupt block payload: {0}")]
    Corrupt(&'static str),
}

const TS_RAW: u8 = 0x01;
const TS_RLE: u8 = 0x02;
const TS_DOD: u8 = 0x03;
const TS_PACK: u8 = 0x04;
const FLOAT_RAW: u8 = 0x10;
const FLOAT_DECIMAL: u8 = 0x11;
const FLOAT_XOR: u8 = 0x12;
const INT_RAW: u8 = 0x20;
const INT_PACK: u8 = 0x21;
const INT_VARINT: u8 = 0x22;
const UINT_RAW: u8 = 0x30;
const UINT_PACK: u8 = 0x31;
const UINT_VARINT: u8 = 0x32;
const BOOL_PACK: u8 = 0x40;
const BOOL_RLE: u8 = 0x41;
const STR_RAW: u8 = 0x50;
const STR_DICT: u8 = 0x51;

/// A codec tag's name for `shardcore inspect`; "unknown" for a byte that is no tag.
pub fn codec_name(tag: u8) -> &'static str {
    match tag {
        TS_RAW => "ts-raw",
        TS_RLE => "ts-rle",
        TS_DOD => "ts-dod",
        TS_PACK => "ts-pack",
        FLOAT_RAW => "float-raw",
        FLOAT_DECIMAL => "float-decimal",
        FLOAT_XOR => "float-xor",
        INT_RAW => "int-raw",
        INT_PACK => "int-pack",
        INT_VARINT => "int-varint",
        UINT_RAW => "uint-raw",
        UINT_PACK => "uint-pack",
        UINT_VARINT => "uint-varint",
        BOOL_PACK => "bool-pack",
        BOOL_RLE => "bool-rle",
        STR_RAW => "str-raw",
        STR_DICT => "str-dict",
        _ => "unknown",
    }
}

const TRAILING: CodecError = CodecError::Corrupt("bytes left after the last value");

/// Decoders reserve at most this many values beyond what the payload's size implies
/// (run-length payloads are tiny for any count; the rest grows as values come).
const RESERVE_FLOOR: usize = 4096;

// ---------------------------------------------------------------------------------
// Public entry points.

/// Appends the payload of a block's timestamps (any order, any i64) to `out`.
pub fn encode_times(ts: &[i64], out: &mut Vec<u8>) {
    // In the order of decoding cost: ts-rle, ts-raw, ts-pack, ts-dod.
    let rle = equal_delta(ts).map(|delta| rle_size(ts.len(), delta));
    let mut best = (TS_RAW, 1 + 8 * ts.len());
    if let Some(size) = rle.filter(|&size| size <= best.1) {
        best = (TS_RLE, size);
    }
    let pack = plan_ints(ts);
    if pack.pack < best.1 {
        best = (TS_PACK, pack.pack);
    }
    // When ts-rle applies ts-dod is never smaller (the same header, then codes).
    if rle.is_none() {
        let dod = plan_dod(ts);
        if dod.size < best.1 {
            write_ts_dod(ts, &dod, out);
            return;
        }
    }
    match best.0 {
        TS_RLE => write_ts_rle(ts, out),
        TS_PACK => write_int_pack(TS_PACK, ts, &pack, out),
        _ => write_raw64(TS_RAW, ts.iter().map(|&t| t as u64), out),
    }
}

/// Appends the payload of a block's float values to `out` (bit-exact).
pub fn encode_floats(v: &[f64], out: &mut Vec<u8>) {
    let start = out.len();
    let raw = 1 + 8 * v.len();
    let decimal = plan_decimal(v);
    let decimal_size = decimal.as_ref().map_or(usize::MAX, |d| 2 + d.plan.best().1);
    let best_fixed = raw.min(decimal_size);
    // float-xor costs at least its first value and one bit per later value: only try it
    // when that could win.
    let xor_floor = if v.is_empty() {
        1
    } else {
        9 + (v.len() - 1).div_ceil(8)
    };
    if xor_floor < best_fixed {
        if write_float_xor(v, out, best_fixed) {
            return;
        }
        out.truncate(start);
    }
    match decimal {
        Some(d) if decimal_size < raw => write_float_decimal(&d, out),
        _ => write_raw64(FLOAT_RAW, v.iter().map(|x| x.to_bits()), out),
    }
}

/// Appends the payload of a block's integer values to `out`.
pub fn encode_integers(v: &[i64], out: &mut Vec<u8>) {
    encode_int_family(v, INT_TAGS, out);
}

/// Appends the payload of a block's unsigned values to `out`.
pub fn encode_unsigned(v: &[u64], out: &mut Vec<u8>) {
    encode_int_family(v, UINT_TAGS, out);
}

/// Appends the payload of a block's boolean values to `out`.
pub fn encode_booleans(v: &[bool], out: &mut Vec<u8>) {
    let pack = 1 + v.len().div_ceil(8);
    if bool_rle_size(v) < pack {
        write_bool_rle(v, out);
    } else {
        write_bool_pack(v, out);
    }
}

/// Appends the payload of a block's string values to `out` (the iterator is walked up
/// to three times).
pub fn encode_strings<'a>(v: impl Iterator<Item = &'a [u8]> + Clone, out: &mut Vec<u8>) {
    let mut n = 0usize;
    let mut raw = 1usize;
    for s in v.clone() {
        n += 1;
        raw += varint_len(s.len() as u64) + s.len();
    }
    if n >= 2 {
        if let Some(dict) = plan_dict(v.clone(), n, raw) {
            if dict.size < raw {
                write_str_dict(&dict, out);
                return;
            }
        }
    }
    write_str_raw(v, out);
}

/// Appends the `count` timestamps of `payload` to `out`.
pub fn decode_times(payload: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    guarded(out, count, payload.len(), |out| {
        let (tag, body) = split_tag(payload)?;
        match tag {
            TS_RAW => decode_raw64(body, count, |x| out.push(x as i64)),
            TS_RLE => decode_ts_rle(body, count, out),
            TS_DOD => decode_ts_dod(body, count, out),
            TS_PACK => decode_int_pack(body, count, |t| out.push(t)),
            _ => Err(CodecError::UnknownCodec(tag)),
        }
    })
}

/// Appends the `count` float values of `payload` to `out`.
pub fn decode_floats(payload: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    guarded(out, count, payload.len(), |out| {
        let (tag, body) = split_tag(payload)?;
        match tag {
            FLOAT_RAW => decode_raw64(body, count, |x| out.push(f64::from_bits(x))),
            FLOAT_DECIMAL => {
                let (&e, rest) = body.split_first().ok_or(CodecError::Truncated)?;
                let scale = *POW10
                    .get(e as usize)
                    .ok_or(CodecError::Corrupt("float-decimal exponent above 18"))?;
                let (tag, body) = split_tag(rest)?;
                decode_int_family(tag, body, count, INT_TAGS, |i| out.push(i as f64 / scale))
            }
            FLOAT_XOR => decode_float_xor(body, count, out),
            _ => Err(CodecError::UnknownCodec(tag)),
        }
    })
}

/// Appends the `count` integer values of `payload` to `out`.
pub fn decode_integers(payload: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    guarded(out, count, payload.len(), |out| {
        let (tag, body) = split_tag(payload)?;
        decode_int_family(tag, body, count, INT_TAGS, |i| out.push(i))
    })
}

/// Appends the `count` unsigned values of `payload` to `out`.
pub fn decode_unsigned(payload: &[u8], count: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    guarded(out, count, payload.len(), |out| {
        let (tag, body) = split_tag(payload)?;
        decode_int_family(tag, body, count, UINT_TAGS, |i| out.push(i as u64))
    })
}

/// Appends the `count` boolean values of `payload` to `out`.
pub fn decode_booleans(
    payload: &[u8],
    count: usize,
    out: &mut Vec<bool>,
) -> Result<(), CodecError> {
    guarded(out, count, payload.len(), |out| {
        let (tag, body) = split_tag(payload)?;
        match tag {
            BOOL_PACK => decode_bool_pack(body, count, out),
            BOOL_RLE => decode_bool_rle(body, count, out),
            _ => Err(CodecError::UnknownCodec(tag)),
        }
    })
}

/// Appends the `count` string values of `payload` to `out`.
pub fn decode_strings(
    payload: &[u8],
    count: usize,
    out: &mut Vec<Vec<u8>>,
) -> Result<(), CodecError> {
    guarded(out, count, payload.len(), |out| {
        let (tag, body) = split_tag(payload)?;
        match tag {
            STR_RAW => decode_str_raw(body, count, out),
            STR_DICT => decode_str_dict(body, count, out),
            _ => Err(CodecError::UnknownCodec(tag)),
        }
    })
}

/// Runs a decoder: reserves what the payload can justify, and leaves `out` as it was
/// on an error.
fn guarded<T>(
    out: &mut Vec<T>,
    count: usize,
    payload_len: usize,
    decode: impl FnOnce(&mut Vec<T>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let start = out.len();
    out.reserve(count.min(payload_len.saturating_mul(8).max(RESERVE_FLOOR)));
    let result = decode(out);
    match result {
        Ok(()) => debug_assert_eq!(out.len() - start, count, "decoder appended a wrong count"),
        Err(_) => out.truncate(start),
    }
    result
}

fn split_tag(payload: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    payload
        .split_first()
        .map(|(&tag, body)| (tag, body))
        .ok_or(CodecError::Truncated)
}

// ---------------------------------------------------------------------------------
// Shared pieces: zig-zag, varints, byte and bit cursors.

#[inline]
fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzz(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Bits needed for `x` (0 for 0).
#[inline]
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

#[inline]
fn varint_len(v: u64) -> usize {
    (bit_len(v | 1) as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of `n` fields of `width` bits; `None` past usize.
fn packed_bytes(n: usize, width: u32) -> Option<usize> {
    let w = width as usize;
    (n / 8).checked_mul(w)?.checked_add((n % 8 * w).div_ceil(8))
}

/// Checks that `bits` holds exactly `n` fields of `width` bits (padded to a byte).
fn check_packed_len(bits: &[u8], n: usize, width: u32) -> Result<(), CodecError> {
    let need = packed_bytes(n, width).ok_or(CodecError::Truncated)?;
    match bits.len().cmp(&need) {
        std::cmp::Ordering::Less => Err(CodecError::Truncated),
        std::cmp::Ordering::Greater => Err(TRAILING),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

#[inline]
fn le64_of(chunk: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

/// A cursor over a payload's bytes.
struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        ByteReader { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated);
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn le64(&mut self) -> Result<u64, CodecError> {
        Ok(le64_of(self.take(8)?))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt("varint longer than 64 bits"))
    }

    /// A varint that must not exceed `max` (a length or a count of what follows).
    fn varint_at_most(&mut self, max: usize) -> Result<usize, CodecError> {
        let v = self.varint()?;
        if v > max as u64 {
            return Err(CodecError::Truncated);
        }
        Ok(v as usize)
    }

    fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    fn finish(&self) -> Result<(), CodecError> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(TRAILING)
        }
    }
}

#[inline]
fn low_bits(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Appends a bit stream to a byte vector through a 64-bit accumulator.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc` (always < 64).
    fill: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            fill: 0,
        }
    }

    /// Writes the low `n` (<= 64) bits of `v`.
    #[inline]
    fn write(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        let v = v & low_bits(n);
        self.acc |= v << self.fill;
        let total = self.fill + n;
        if total >= 64 {
            self.out.extend_from_slice(&self.acc.to_le_bytes());
            self.acc = if self.fill == 0 {
                0
            } else {
                v >> (64 - self.fill)
            };
            self.fill = total - 64;
        } else {
            self.fill = total;
        }
    }

    /// A prefix code of `plen` bits followed by `n` bits of `v`.
    #[inline]
    fn write_code(&mut self, prefix: u64, plen: u32, v: u64, n: u32) {
        if plen + n <= 64 {
            self.write(prefix | (v & low_bits(n)) << plen, plen + n);
        } else {
            self.write(prefix, plen);
            self.write(v, n);
        }
    }

    /// Flushes the last, partly filled byte.
    fn finish(self) {
        let bytes = self.fill.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

/// Reads a bit stream through a 64-bit accumulator; running out of bits is
/// [`CodecError::Truncated`].
struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load.
    pos: usize,
    acc: u64,
    /// Bits loaded in `acc` (the bits above them are zero).
    avail: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Bits not read yet.
    fn remaining_bits(&self) -> u64 {
        (self.data.len() - self.pos) as u64 * 8 + u64::from(self.avail)
    }

    #[inline]
    fn refill(&mut self) {
        if self.avail > 56 {
            return;
        }
        if self.pos + 8 <= self.data.len() {
            let word = le64_of(&self.data[self.pos..self.pos + 8]);
            let bytes = (64 - self.avail) / 8;
            self.acc |= word << self.avail;
            self.avail += bytes * 8;
            self.acc &= low_bits(self.avail);
            self.pos += bytes as usize;
        } else {
            while self.avail <= 56 && self.pos < self.data.len() {
                self.acc |= u64::from(self.data[self.pos]) << self.avail;
                self.avail += 8;
                self.pos += 1;
            }
        }
    }

    /// Reads `n` (<= 64) bits.
    #[inline]
    fn read(&mut self, n: u32) -> Result<u64, CodecError> {
        if n > 56 {
            let low = self.read(32)?;
            let high = self.read(n - 32)?;
            return Ok(low | high << 32);
        }
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(CodecError::Truncated);
            }
        }
        let v = self.acc & low_bits(n);
        self.acc >>= n;
        self.avail -= n;
        Ok(v)
    }

    /// The next `n` (<= 56) bits without consuming them (zeros past the end).
    #[inline]
    fn peek(&mut self, n: u32) -> u64 {
        if self.avail < n {
            self.refill();
        }
        self.acc & low_bits(n)
    }

    /// Consumes `n` (<= 56) bits.
    #[inline]
    fn skip(&mut self, n: u32) -> Result<(), CodecError> {
        self.read(n).map(|_| ())
    }

    /// Whole bytes left unread are an error (the last byte's padding is not).
    fn finish(&self) -> Result<(), CodecError> {
        if self.remaining_bits() >= 8 {
            Err(TRAILING)
        } else {
            Ok(())
        }
    }
}

/// `le64` per value.
fn write_raw64(tag: u8, v: impl ExactSizeIterator<Item = u64>, out: &mut Vec<u8>) {
    out.reserve(1 + 8 * v.len());
    out.push(tag);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn decode_raw64(body: &[u8], count: usize, mut push: impl FnMut(u64)) -> Result<(), CodecError> {
    check_packed_len(body, count, 64)?;
    for chunk in body.chunks_exact(8) {
        push(le64_of(chunk));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Timestamps.

/// The common delta when every delta is the same (any block of up to 2 values).
fn equal_delta(ts: &[i64]) -> Option<i64> {
    let delta = match ts {
        [a, b, ..] => b.wrapping_sub(*a),
        _ => 0,
    };
    ts.windows(2)
        .all(|w| w[1].wrapping_sub(w[0]) == delta)
        .then_some(delta)
}

fn rle_size(n: usize, delta: i64) -> usize {
    match n {
        0 => 1,
        1 => 9,
        _ => 9 + varint_len(zz(delta)),
    }
}

fn write_ts_rle(ts: &[i64], out: &mut Vec<u8>) {
    out.push(TS_RLE);
    if let Some(first) = ts.first() {
        out.extend_from_slice(&first.to_le_bytes());
    }
    if let [a, b, ..] = ts {
        put_varint(out, zz(b.wrapping_sub(*a)));
    }
}

fn decode_ts_rle(body: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    if count == 0 {
        return r.finish();
    }
    let first = r.le64()? as i64;
    let delta = if count >= 2 { unzz(r.varint()?) } else { 0 };
    r.finish()?;
    let mut t = first;
    out.push(t);
    for _ in 1..count {
        t = t.wrapping_add(delta);
        out.push(t);
    }
    Ok(())
}

/// The widths of a ts-dod block and its size in bytes (tag included).
struct DodPlan {
    widths: [u32; 3],
    size: usize,
}

/// Bits of a ts-dod code in the escape class (`1111` and 64 bits).
const ESCAPE_BITS: u64 = 4 + 64;

fn plan_dod(ts: &[i64]) -> DodPlan {
    let n = ts.len();
    if n < 3 {
        return DodPlan {
            widths: [0; 3],
            size: rle_size(n, equal_delta(ts).unwrap_or(0)),
        };
    }
    let mut hist = [0u64; 65];
    let mut delta = ts[1].wrapping_sub(ts[0]);
    for w in ts[1..].windows(2) {
        let d = w[1].wrapping_sub(w[0]);
        hist[bit_len(zz(d.wrapping_sub(delta))) as usize] += 1;
        delta = d;
    }
    let (widths, bits) = choose_dod_widths(&hist);
    DodPlan {
        widths,
        size: 9 + varint_len(zz(ts[1].wrapping_sub(ts[0]))) + 3 + bits.div_ceil(8) as usize,
    }
}

/// The class widths w1 <= w2 <= w3 that minimize the bits of a ts-dod stream whose
/// zig-zagged delta-of-deltas have the bit-length histogram `hist`, and those bits.
///
/// An optimal width is always one of the lengths present (a class's width can drop to
/// its longest member), and with w2 fixed the choices of w1 and w3 are independent, so
/// this is O(k^2) for k distinct lengths.
fn choose_dod_widths(hist: &[u64; 65]) -> ([u32; 3], u64) {
    let zeros = hist[0];
    let mut cum = [0u64; 65];
    let mut present = [0u32; 64];
    let mut k = 0;
    for b in 1..=64 {
        cum[b] = cum[b - 1] + hist[b];
        if hist[b] > 0 {
            present[k] = b as u32;
            k += 1;
        }
    }
    let present = &present[..k];
    let total = cum[64];
    let mut best = (zeros + total * ESCAPE_BITS, [64; 3]);
    for &w2 in present {
        let c2 = cum[w2 as usize];
        let class1 = present
            .iter()
            .take_while(|&&w1| w1 <= w2)
            .map(|&w1| {
                let c1 = cum[w1 as usize];
                (
                    c1 * (2 + u64::from(w1)) + (c2 - c1) * (3 + u64::from(w2)),
                    w1,
                )
            })
            .min()
            .unwrap_or((0, w2));
        let class3 = present
            .iter()
            .skip_while(|&&w3| w3 < w2)
            .map(|&w3| {
                let c3 = cum[w3 as usize];
                (
                    (c3 - c2) * (4 + u64::from(w3)) + (total - c3) * ESCAPE_BITS,
                    w3,
                )
            })
            .min()
            .unwrap_or((0, w2));
        let bits = zeros + class1.0 + class3.0;
        if bits < best.0 {
            best = (bits, [class1.1, w2, class3.1]);
        }
    }
    (best.1, best.0)
}

fn write_ts_dod(ts: &[i64], plan: &DodPlan, out: &mut Vec<u8>) {
    out.push(TS_DOD);
    let Some(&first) = ts.first() else { return };
    out.extend_from_slice(&first.to_le_bytes());
    let [_, second, ..] = ts else { return };
    let mut delta = second.wrapping_sub(first);
    put_varint(out, zz(delta));
    if ts.len() < 3 {
        return;
    }
    let [w1, w2, w3] = plan.widths;
    out.extend_from_slice(&[w1 as u8, w2 as u8, w3 as u8]);
    let mut w = BitWriter::new(out);
    for pair in ts[1..].windows(2) {
        let d = pair[1].wrapping_sub(pair[0]);
        let z = zz(d.wrapping_sub(delta));
        delta = d;
        let len = bit_len(z);
        if z == 0 {
            w.write(0, 1);
        } else if len <= w1 {
            w.write_code(0b01, 2, z, w1);
        } else if len <= w2 {
            w.write_code(0b011, 3, z, w2);
        } else if len <= w3 {
            w.write_code(0b0111, 4, z, w3);
        } else {
            w.write_code(0b1111, 4, z, 64);
        }
    }
    w.finish();
}

fn decode_ts_dod(body: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    if count == 0 {
        return r.finish();
    }
    let first = r.le64()? as i64;
    if count == 1 {
        r.finish()?;
        out.push(first);
        return Ok(());
    }
    let mut delta = unzz(r.varint()?);
    let mut t = first.wrapping_add(delta);
    if count == 2 {
        r.finish()?;
        out.extend_from_slice(&[first, t]);
        return Ok(());
    }
    let mut widths = [0u32; 3];
    for w in &mut widths {
        *w = u32::from(r.u8()?);
        if *w > 64 {
            return Err(CodecError::Corrupt("ts-dod class width above 64"));
        }
    }
    let [w1, w2, w3] = widths;
    let mut bits = BitReader::new(r.rest());
    if (count - 2) as u64 > bits.remaining_bits() {
        return Err(CodecError::Truncated);
    }
    out.extend_from_slice(&[first, t]);
    for _ in 2..count {
        let code = bits.peek(4);
        let z = if code & 1 == 0 {
            bits.skip(1)?;
            0
        } else if code & 2 == 0 {
            bits.skip(2)?;
            bits.read(w1)?
        } else if code & 4 == 0 {
            bits.skip(3)?;
            bits.read(w2)?
        } else if code & 8 == 0 {
            bits.skip(4)?;
            bits.read(w3)?
        } else {
            bits.skip(4)?;
            bits.read(64)?
        };
        delta = delta.wrapping_add(unzz(z));
        t = t.wrapping_add(delta);
        out.push(t);
    }
    bits.finish()
}

// ---------------------------------------------------------------------------------
// Floats.

/// 10^e for e in 0..=18, all exact in f64.
const POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// A block's float-decimal form: exponent, integers, and their integer plan.
struct DecimalPlan {
    exponent: u8,
    ints: Vec<i64>,
    plan: IntPlan,
}

/// `x * scale` rounded to an integer (saturating). Any rounding would do, since the
/// encoder checks that every value comes back exactly; this one avoids `f64::round`,
/// a libm call on baseline x86-64.
#[inline]
fn decimal_int(x: f64, scale: f64) -> i64 {
    let y = x * scale;
    // From 2^52 up every f64 is an integer (and adding 0.5 would round to even).
    if y.abs() < 4_503_599_627_370_496.0 {
        (y + 0.5f64.copysign(y)) as i64
    } else {
        y as i64
    }
}

/// Whether `x` comes back bit for bit from its integer at scale `scale`.
#[inline]
fn decimal_fits(x: f64, scale: f64) -> bool {
    (decimal_int(x, scale) as f64 / scale).to_bits() == x.to_bits()
}

/// The smallest e for which every value round-trips through `i as f64 / 10^e`.
fn decimal_exponent(v: &[f64]) -> Option<u8> {
    let mut e = 0usize;
    loop {
        let before = e;
        for &x in v {
            while !decimal_fits(x, POW10[e]) {
                e += 1;
                if e >= POW10.len() {
                    return None;
                }
            }
        }
        // A whole pass without raising e: every value fits at e, and every smaller e
        // failed some value.
        if e == before {
            return Some(e as u8);
        }
    }
}

fn plan_decimal(v: &[f64]) -> Option<DecimalPlan> {
    if v.is_empty() {
        return None;
    }
    let exponent = decimal_exponent(v)?;
    let scale = POW10[exponent as usize];
    let ints: Vec<i64> = v.iter().map(|&x| decimal_int(x, scale)).collect();
    let plan = plan_ints(&ints);
    Some(DecimalPlan {
        exponent,
        ints,
        plan,
    })
}

fn write_float_decimal(d: &DecimalPlan, out: &mut Vec<u8>) {
    out.extend_from_slice(&[FLOAT_DECIMAL, d.exponent]);
    write_ints(d.plan.best().0, &d.ints, &d.plan, INT_TAGS, out);
}

/// float-xor keeps its current window while a value's meaningful bits fit in it, unless
/// it wastes more bits than a new window's header costs.
const XOR_WINDOW_HEADER_BITS: u32 = 12;

/// Appends the float-xor payload of `v`; gives up (false, `out` holding a partial
/// payload) once it reaches `limit` bytes.
fn write_float_xor(v: &[f64], out: &mut Vec<u8>, limit: usize) -> bool {
    let start = out.len();
    out.push(FLOAT_XOR);
    let Some(first) = v.first() else {
        return limit > 1;
    };
    let mut prev = first.to_bits();
    out.extend_from_slice(&prev.to_le_bytes());
    let (mut lead, mut len) = (0u32, 64u32);
    let mut w = BitWriter::new(out);
    for (i, x) in v[1..].iter().enumerate() {
        if i % 64 == 63 && w.out.len() - start >= limit {
            return false;
        }
        let bits = x.to_bits();
        let xor = bits ^ prev;
        prev = bits;
        if xor == 0 {
            w.write(0, 1);
            continue;
        }
        let l = xor.leading_zeros();
        let t = xor.trailing_zeros();
        let needed = 64 - l - t;
        let shift = 64 - lead - len;
        if l >= lead && t >= shift && len - needed <= XOR_WINDOW_HEADER_BITS {
            w.write_code(0b01, 2, xor >> shift, len);
        } else {
            lead = l;
            len = needed;
            w.write(0b11 | u64::from(l) << 2 | u64::from(len - 1) << 8, 14);
            w.write(xor >> t, len);
        }
    }
    w.finish();
    out.len() - start < limit
}

fn decode_float_xor(body: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    if count == 0 {
        return r.finish();
    }
    let mut prev = r.le64()?;
    let mut bits = BitReader::new(r.rest());
    if (count - 1) as u64 > bits.remaining_bits() {
        return Err(CodecError::Truncated);
    }
    out.push(f64::from_bits(prev));
    let (mut lead, mut len) = (0u32, 64u32);
    for _ in 1..count {
        let code = bits.peek(2);
        if code & 1 == 0 {
            bits.skip(1)?;
        } else {
            bits.skip(2)?;
            if code & 2 != 0 {
                let header = bits.read(12)?;
                lead = (header & 63) as u32;
                len = (header >> 6) as u32 + 1;
                if lead + len > 64 {
                    return Err(CodecError::Corrupt("float-xor window past 64 bits"));
                }
            }
            prev ^= bits.read(len)? << (64 - lead - len);
        }
        out.push(f64::from_bits(prev));
    }
    bits.finish()
}

// ---------------------------------------------------------------------------------
// Integers and unsigned.

/// The tags of one integer family.
#[derive(Clone, Copy)]
struct IntTags {
    raw: u8,
    pack: u8,
    varint: u8,
}

const INT_TAGS: IntTags = IntTags {
    raw: INT_RAW,
    pack: INT_PACK,
    varint: INT_VARINT,
};

const UINT_TAGS: IntTags = IntTags {
    raw: UINT_RAW,
    pack: UINT_PACK,
    varint: UINT_VARINT,
};

/// A 64-bit integer as the integer codecs see it.
trait Word: Copy {
    fn word(self) -> i64;
}

impl Word for i64 {
    #[inline]
    fn word(self) -> i64 {
        self
    }
}

impl Word for u64 {
    #[inline]
    fn word(self) -> i64 {
        self as i64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IntCodec {
    Raw,
    Pack,
    Varint,
}

/// The exact size (tag included) of a block under each integer codec, and the pack
/// parameters.
struct IntPlan {
    first: i64,
    min_delta: i64,
    width: u32,
    raw: usize,
    pack: usize,
    varint: usize,
}

impl IntPlan {
    /// The smallest codec and its size; ties go to the cheaper to decode.
    fn best(&self) -> (IntCodec, usize) {
        let mut best = (IntCodec::Raw, self.raw);
        if self.pack < best.1 {
            best = (IntCodec::Pack, self.pack);
        }
        if self.varint < best.1 {
            best = (IntCodec::Varint, self.varint);
        }
        best
    }
}

fn plan_ints<T: Word>(v: &[T]) -> IntPlan {
    let raw = 1 + 8 * v.len();
    let Some(first) = v.first().map(|x| x.word()) else {
        return IntPlan {
            first: 0,
            min_delta: 0,
            width: 0,
            raw,
            pack: 1,
            varint: 1,
        };
    };
    let head = 1 + varint_len(zz(first));
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut varint = head;
    let mut prev = first;
    for x in &v[1..] {
        let x = x.word();
        let d = x.wrapping_sub(prev);
        prev = x;
        min = min.min(d);
        max = max.max(d);
        varint += varint_len(zz(d));
    }
    if v.len() == 1 {
        return IntPlan {
            first,
            min_delta: 0,
            width: 0,
            raw,
            pack: head,
            varint,
        };
    }
    let width = bit_len((max as u64).wrapping_sub(min as u64));
    let pack = packed_bytes(v.len() - 1, width)
        .map_or(usize::MAX, |bits| head + varint_len(zz(min)) + 1 + bits);
    IntPlan {
        first,
        min_delta: min,
        width,
        raw,
        pack,
        varint,
    }
}

fn encode_int_family<T: Word>(v: &[T], tags: IntTags, out: &mut Vec<u8>) {
    let plan = plan_ints(v);
    write_ints(plan.best().0, v, &plan, tags, out);
}

fn write_ints<T: Word>(codec: IntCodec, v: &[T], plan: &IntPlan, tags: IntTags, out: &mut Vec<u8>) {
    match codec {
        IntCodec::Raw => write_raw64(tags.raw, v.iter().map(|x| x.word() as u64), out),
        IntCodec::Pack => write_int_pack(tags.pack, v, plan, out),
        IntCodec::Varint => {
            out.push(tags.varint);
            let mut prev = 0i64;
            for x in v {
                let x = x.word();
                put_varint(out, zz(x.wrapping_sub(prev)));
                prev = x;
            }
        }
    }
}

/// The int-pack layout (also ts-pack's) under `tag`.
fn write_int_pack<T: Word>(tag: u8, v: &[T], plan: &IntPlan, out: &mut Vec<u8>) {
    out.reserve(plan.pack);
    out.push(tag);
    if v.is_empty() {
        return;
    }
    put_varint(out, zz(plan.first));
    if v.len() == 1 {
        return;
    }
    put_varint(out, zz(plan.min_delta));
    out.push(plan.width as u8);
    if plan.width == 0 {
        return;
    }
    let mut w = BitWriter::new(out);
    let mut prev = plan.first;
    for x in &v[1..] {
        let x = x.word();
        let d = x.wrapping_sub(prev);
        prev = x;
        w.write((d as u64).wrapping_sub(plan.min_delta as u64), plan.width);
    }
    w.finish();
}

fn decode_int_pack(body: &[u8], count: usize, mut push: impl FnMut(i64)) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    if count == 0 {
        return r.finish();
    }
    let first = unzz(r.varint()?);
    if count == 1 {
        r.finish()?;
        push(first);
        return Ok(());
    }
    let min = unzz(r.varint()?) as u64;
    let width = u32::from(r.u8()?);
    if width > 64 {
        return Err(CodecError::Corrupt("integer bit width above 64"));
    }
    check_packed_len(r.rest(), count - 1, width)?;
    push(first);
    let mut prev = first;
    if width == 0 {
        for _ in 1..count {
            prev = prev.wrapping_add(min as i64);
            push(prev);
        }
        return Ok(());
    }
    let mut bits = BitReader::new(r.rest());
    for _ in 1..count {
        prev = prev.wrapping_add(min.wrapping_add(bits.read(width)?) as i64);
        push(prev);
    }
    Ok(())
}

fn decode_int_family(
    tag: u8,
    body: &[u8],
    count: usize,
    tags: IntTags,
    mut push: impl FnMut(i64),
) -> Result<(), CodecError> {
    if tag == tags.raw {
        decode_raw64(body, count, |x| push(x as i64))
    } else if tag == tags.pack {
        decode_int_pack(body, count, push)
    } else if tag == tags.varint {
        let mut r = ByteReader::new(body);
        if count > r.remaining() {
            return Err(CodecError::Truncated);
        }
        let mut prev = 0i64;
        for _ in 0..count {
            prev = prev.wrapping_add(unzz(r.varint()?));
            push(prev);
        }
        r.finish()
    } else {
        Err(CodecError::UnknownCodec(tag))
    }
}

// ---------------------------------------------------------------------------------
// Booleans.

fn bool_rle_size(v: &[bool]) -> usize {
    if v.is_empty() {
        return 1;
    }
    let mut size = 2;
    let mut run = 1u64;
    for w in v.windows(2) {
        if w[0] == w[1] {
            run += 1;
        } else {
            size += varint_len(run);
            run = 1;
        }
    }
    size
}

fn write_bool_rle(v: &[bool], out: &mut Vec<u8>) {
    out.push(BOOL_RLE);
    let Some(&first) = v.first() else { return };
    out.push(u8::from(first));
    let mut run = 1u64;
    for w in v.windows(2) {
        if w[0] == w[1] {
            run += 1;
        } else {
            put_varint(out, run);
            run = 1;
        }
    }
}

fn write_bool_pack(v: &[bool], out: &mut Vec<u8>) {
    out.reserve(1 + v.len().div_ceil(8));
    out.push(BOOL_PACK);
    for chunk in v.chunks(8) {
        let byte = chunk
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &b)| acc | u8::from(b) << i);
        out.push(byte);
    }
}

fn decode_bool_pack(body: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    check_packed_len(body, count, 1)?;
    out.extend((0..count).map(|i| body[i >> 3] >> (i & 7) & 1 != 0));
    Ok(())
}

fn decode_bool_rle(body: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    if count == 0 {
        return r.finish();
    }
    let mut value = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(CodecError::Corrupt("bool-rle first value not 0 or 1")),
    };
    let mut left = count;
    while r.remaining() > 0 {
        let run = r.varint()?;
        // The last run is implied, so every stored one leaves at least one value.
        if run == 0 || run >= left as u64 {
            return Err(CodecError::Corrupt("bool-rle run empty or past the block"));
        }
        out.extend(std::iter::repeat_n(value, run as usize));
        left -= run as usize;
        value = !value;
    }
    out.extend(std::iter::repeat_n(value, left));
    Ok(())
}

// ---------------------------------------------------------------------------------
// Strings.

fn write_str_raw<'a>(v: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    out.push(STR_RAW);
    for s in v {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s);
    }
}

/// A block's str-dict form.
struct DictPlan<'a> {
    entries: Vec<&'a [u8]>,
    indices: Vec<u32>,
    width: u32,
    size: usize,
}

fn dict_width(entries: usize) -> u32 {
    if entries <= 1 {
        0
    } else {
        bit_len(entries as u64 - 1)
    }
}

/// The str-dict form of the `n` strings of `v`, unless it reaches `limit` bytes.
fn plan_dict<'a>(
    v: impl Iterator<Item = &'a [u8]>,
    n: usize,
    limit: usize,
) -> Option<DictPlan<'a>> {
    let mut ids: HashMap<&'a [u8], u32> = HashMap::new();
    let mut entries = Vec::new();
    let mut indices = Vec::with_capacity(n);
    let mut bytes = 1usize;
    for s in v {
        let next = entries.len() as u32;
        let id = *ids.entry(s).or_insert(next);
        if id == next {
            entries.push(s);
            bytes += varint_len(s.len() as u64) + s.len();
            if bytes >= limit {
                return None;
            }
        }
        indices.push(id);
    }
    let width = dict_width(entries.len());
    let size = bytes + varint_len(entries.len() as u64) + packed_bytes(n, width)?;
    Some(DictPlan {
        entries,
        indices,
        width,
        size,
    })
}

fn write_str_dict(plan: &DictPlan<'_>, out: &mut Vec<u8>) {
    out.reserve(plan.size);
    out.push(STR_DICT);
    put_varint(out, plan.entries.len() as u64);
    for s in &plan.entries {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s);
    }
    if plan.width == 0 {
        return;
    }
    let mut w = BitWriter::new(out);
    for &i in &plan.indices {
        w.write(u64::from(i), plan.width);
    }
    w.finish();
}

fn decode_str_raw(body: &[u8], count: usize, out: &mut Vec<Vec<u8>>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    if count > r.remaining() {
        return Err(CodecError::Truncated);
    }
    for _ in 0..count {
        let len = r.varint_at_most(r.remaining())?;
        out.push(r.take(len)?.to_vec());
    }
    r.finish()
}

fn decode_str_dict(body: &[u8], count: usize, out: &mut Vec<Vec<u8>>) -> Result<(), CodecError> {
    let mut r = ByteReader::new(body);
    // Every entry takes at least its length byte.
    let n = r.varint_at_most(r.remaining())?;
    if n == 0 && count > 0 {
        return Err(CodecError::Corrupt("str-dict with no strings"));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.varint_at_most(r.remaining())?;
        entries.push(r.take(len)?);
    }
    let width = dict_width(n);
    check_packed_len(r.rest(), count, width)?;
    if width == 0 {
        if let Some(only) = entries.first() {
            out.extend((0..count).map(|_| only.to_vec()));
        }
        return Ok(());
    }
    let mut bits = BitReader::new(r.rest());
    for _ in 0..count {
        let s = entries
            .get(bits.read(width)? as usize)
            .ok_or(CodecError::Corrupt("str-dict index past the dictionary"))?;
        out.push(s.to_vec());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every tag with its name.
    const ALL_TAGS: [(u8, &str); 17] = [
        (TS_RAW, "ts-raw"),
        (TS_RLE, "ts-rle"),
        (TS_DOD, "ts-dod"),
        (TS_PACK, "ts-pack"),
        (FLOAT_RAW, "float-raw"),
        (FLOAT_DECIMAL, "float-decimal"),
        (FLOAT_XOR, "float-xor"),
        (INT_RAW, "int-raw"),
        (INT_PACK, "int-pack"),
        (INT_VARINT, "int-varint"),
        (UINT_RAW, "uint-raw"),
        (UINT_PACK, "uint-pack"),
        (UINT_VARINT, "uint-varint"),
        (BOOL_PACK, "bool-pack"),
        (BOOL_RLE, "bool-rle"),
        (STR_RAW, "str-raw"),
        (STR_DICT, "str-dict"),
    ];

    /// A small deterministic generator for the realistic data sets.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in 0..n.
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    // --- Every codec forced, for round trips of codecs the trial rarely picks. ---

    fn times_all(ts: &[i64]) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let mut out = Vec::new();
        write_raw64(TS_RAW, ts.iter().map(|&t| t as u64), &mut out);
        all.push(out);
        if equal_delta(ts).is_some() {
            let mut out = Vec::new();
            write_ts_rle(ts, &mut out);
            all.push(out);
        }
        let mut out = Vec::new();
        write_ts_dod(ts, &plan_dod(ts), &mut out);
        all.push(out);
        let mut out = Vec::new();
        write_int_pack(TS_PACK, ts, &plan_ints(ts), &mut out);
        all.push(out);
        all
    }

    fn floats_all(v: &[f64]) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let mut out = Vec::new();
        write_raw64(FLOAT_RAW, v.iter().map(|x| x.to_bits()), &mut out);
        all.push(out);
        if let Some(d) = plan_decimal(v) {
            let mut out = Vec::new();
            write_float_decimal(&d, &mut out);
            all.push(out);
        }
        let mut out = Vec::new();
        assert!(write_float_xor(v, &mut out, usize::MAX));
        all.push(out);
        all
    }

    fn ints_all<T: Word>(v: &[T], tags: IntTags) -> Vec<Vec<u8>> {
        let plan = plan_ints(v);
        [IntCodec::Raw, IntCodec::Pack, IntCodec::Varint]
            .into_iter()
            .map(|codec| {
                let mut out = Vec::new();
                write_ints(codec, v, &plan, tags, &mut out);
                let size = match codec {
                    IntCodec::Raw => plan.raw,
                    IntCodec::Pack => plan.pack,
                    IntCodec::Varint => plan.varint,
                };
                assert_eq!(out.len(), size, "planned size of {codec:?}");
                out
            })
            .collect()
    }

    fn bools_all(v: &[bool]) -> Vec<Vec<u8>> {
        let mut pack = Vec::new();
        write_bool_pack(v, &mut pack);
        let mut rle = Vec::new();
        write_bool_rle(v, &mut rle);
        assert_eq!(rle.len(), bool_rle_size(v));
        vec![pack, rle]
    }

    fn strings_all(v: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut raw = Vec::new();
        write_str_raw(v.iter().map(|s| s.as_slice()), &mut raw);
        let mut dict = Vec::new();
        let plan = plan_dict(v.iter().map(|s| s.as_slice()), v.len(), usize::MAX).unwrap();
        write_str_dict(&plan, &mut dict);
        assert_eq!(dict.len(), plan.size);
        vec![raw, dict]
    }

    /// The trial's payload is as small as the smallest forced one.
    fn assert_smallest(chosen: &[u8], all: &[Vec<u8>]) {
        let min = all.iter().map(Vec::len).min().unwrap();
        assert_eq!(
            chosen.len(),
            min,
            "chose {} over a smaller codec",
            codec_name(chosen[0])
        );
    }

    fn check_times(ts: &[i64]) {
        let mut chosen = Vec::new();
        encode_times(ts, &mut chosen);
        let all = times_all(ts);
        assert_smallest(&chosen, &all);
        assert!(chosen.len() <= 1 + 8 * ts.len());
        for payload in all.iter().chain([&chosen]) {
            let mut out = vec![7];
            decode_times(payload, ts.len(), &mut out).unwrap();
            assert_eq!(&out[1..], ts, "{}", codec_name(payload[0]));
        }
    }

    fn check_floats(v: &[f64]) {
        let mut chosen = Vec::new();
        encode_floats(v, &mut chosen);
        let all = floats_all(v);
        assert_smallest(&chosen, &all);
        assert!(chosen.len() <= 1 + 8 * v.len());
        let want: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
        for payload in all.iter().chain([&chosen]) {
            let mut out = Vec::new();
            decode_floats(payload, v.len(), &mut out).unwrap();
            let got: Vec<u64> = out.iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "{}", codec_name(payload[0]));
        }
    }

    fn check_integers(v: &[i64]) {
        let mut chosen = Vec::new();
        encode_integers(v, &mut chosen);
        let all = ints_all(v, INT_TAGS);
        assert_smallest(&chosen, &all);
        for payload in all.iter().chain([&chosen]) {
            let mut out = Vec::new();
            decode_integers(payload, v.len(), &mut out).unwrap();
            assert_eq!(out, v, "{}", codec_name(payload[0]));
        }
    }

    fn check_unsigned(v: &[u64]) {
        let mut chosen = Vec::new();
        encode_unsigned(v, &mut chosen);
        let all = ints_all(v, UINT_TAGS);
        assert_smallest(&chosen, &all);
        for payload in all.iter().chain([&chosen]) {
            let mut out = Vec::new();
            decode_unsigned(payload, v.len(), &mut out).unwrap();
            assert_eq!(out, v, "{}", codec_name(payload[0]));
            // An unsigned payload is no integer payload, and the reverse.
            assert_eq!(
                decode_integers(payload, v.len(), &mut Vec::new()),
                Err(CodecError::UnknownCodec(payload[0]))
            );
        }
    }

    fn check_booleans(v: &[bool]) {
        let mut chosen = Vec::new();
        encode_booleans(v, &mut chosen);
        let all = bools_all(v);
        assert_smallest(&chosen, &all);
        for payload in all.iter().chain([&chosen]) {
            let mut out = Vec::new();
            decode_booleans(payload, v.len(), &mut out).unwrap();
            assert_eq!(out, v, "{}", codec_name(payload[0]));
        }
    }

    fn check_strings(v: &[Vec<u8>]) {
        let mut chosen = Vec::new();
        encode_strings(v.iter().map(|s| s.as_slice()), &mut chosen);
        let all = strings_all(v);
        // An empty or one-value block never tries the dictionary.
        if v.len() >= 2 {
            assert_smallest(&chosen, &all);
        }
        for payload in all.iter().chain([&chosen]) {
            let mut out = Vec::new();
            decode_strings(payload, v.len(), &mut out).unwrap();
            assert_eq!(out, v, "{}", codec_name(payload[0]));
        }
    }

    // --- Strategies. ---

    fn times_strategy() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            prop::collection::vec(any::<i64>(), 0..200),
            // Ascending with jitter, the usual shape.
            (
                any::<i64>(),
                1i64..1_000_000_000_000,
                prop::collection::vec(-5_000_000i64..5_000_000, 0..300)
            )
                .prop_map(|(start, step, jitter)| {
                    jitter
                        .iter()
                        .enumerate()
                        .map(|(i, j)| {
                            start
                                .wrapping_add(step.wrapping_mul(i as i64))
                                .wrapping_add(j / 7 * 7)
                        })
                        .collect()
                }),
            // Regular intervals, possibly wrapping.
            (any::<i64>(), any::<i64>(), 0usize..300).prop_map(|(start, step, n)| {
                (0..n)
                    .map(|i| start.wrapping_add(step.wrapping_mul(i as i64)))
                    .collect()
            }),
            prop::collection::vec(
                prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(-1i64)],
                0..50
            ),
        ]
    }

    fn float_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-100_000i64..100_000, 0usize..4).prop_map(|(i, e)| i as f64 / POW10[e]),
            prop::sample::select(vec![
                0.0,
                -0.0,
                f64::NAN,
                -f64::NAN,
                f64::from_bits(0x7ff0_0000_0000_0001),
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE / 3.0,
                f64::MAX,
                f64::MIN,
                i64::MAX as f64,
                i64::MIN as f64,
                1e300,
            ]),
        ]
    }

    fn integers_strategy() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            prop::collection::vec(any::<i64>(), 0..200),
            prop::collection::vec(-1000i64..1000, 0..300),
            (any::<i64>(), prop::collection::vec(0i64..50, 0..300)).prop_map(|(start, steps)| {
                steps
                    .iter()
                    .scan(start, |acc, s| {
                        *acc = acc.wrapping_add(*s);
                        Some(*acc)
                    })
                    .collect()
            }),
            prop::collection::vec(
                prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(1i64)],
                0..50
            ),
        ]
    }

    fn strings_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop_oneof![
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..100),
            prop::collection::vec(
                prop::sample::select(vec![
                    b"ok".to_vec(),
                    b"warning".to_vec(),
                    b"critical".to_vec(),
                    Vec::new(),
                ]),
                0..300
            ),
        ]
    }

    /// A payload for the no-panic tests: any bytes, a valid tag with any body, or a
    /// valid payload with a few bytes changed or cut.
    fn hostile_payload() -> impl Strategy<Value = Vec<u8>> {
        let tags: Vec<u8> = ALL_TAGS.iter().map(|t| t.0).collect();
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            (
                prop::sample::select(tags),
                prop::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(tag, mut body)| {
                    body.insert(0, tag);
                    body
                }),
            (
                0usize..6,
                prop::collection::vec(any::<i64>(), 0..60),
                prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
                any::<usize>()
            )
                .prop_map(|(kind, values, edits, cut)| {
                    let mut out = Vec::new();
                    match kind {
                        0 => encode_times(&values, &mut out),
                        1 => {
                            let v: Vec<f64> =
                                values.iter().map(|&x| (x % 1000) as f64 / 10.0).collect();
                            encode_floats(&v, &mut out)
                        }
                        2 => encode_integers(&values, &mut out),
                        3 => {
                            let v: Vec<u64> = values.iter().map(|&x| (x % 7) as u64).collect();
                            encode_unsigned(&v, &mut out)
                        }
                        4 => {
                            let v: Vec<bool> = values.iter().map(|&x| x % 5 == 0).collect();
                            encode_booleans(&v, &mut out)
                        }
                        _ => {
                            let v: Vec<[u8; 1]> = values.iter().map(|&x| [(x % 3) as u8]).collect();
                            encode_strings(v.iter().map(|s| s.as_slice()), &mut out)
                        }
                    }
                    for (at, byte) in edits {
                        let i = at % out.len();
                        out[i] = byte;
                    }
                    if cut % 3 == 0 {
                        out.truncate(cut / 3 % (out.len() + 1));
                    }
                    out
                }),
        ]
    }

    type Decoder<T> = fn(&[u8], usize, &mut Vec<T>) -> Result<(), CodecError>;

    fn check_decoder<T>(
        decode: Decoder<T>,
        payload: &[u8],
        count: usize,
    ) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        match decode(payload, count, &mut out) {
            Ok(()) => prop_assert_eq!(out.len(), count),
            Err(_) => prop_assert_eq!(out.len(), 0),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn times_round_trip(ts in times_strategy()) {
            check_times(&ts);
        }

        #[test]
        fn floats_round_trip(v in prop::collection::vec(float_strategy(), 0..300)) {
            check_floats(&v);
        }

        #[test]
        fn decimal_floats_round_trip(
            v in prop::collection::vec((-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0), 0..300)
        ) {
            check_floats(&v);
        }

        #[test]
        fn integers_round_trip(v in integers_strategy()) {
            check_integers(&v);
        }

        #[test]
        fn unsigned_round_trip(v in integers_strategy()) {
            let v: Vec<u64> = v.iter().map(|&x| x as u64).collect();
            check_unsigned(&v);
        }

        #[test]
        fn booleans_round_trip(
            v in prop_oneof![
                prop::collection::vec(any::<bool>(), 0..300),
                prop::collection::vec(prop::bool::weighted(0.02), 0..3000),
            ]
        ) {
            check_booleans(&v);
        }

        #[test]
        fn strings_round_trip(v in strings_strategy()) {
            check_strings(&v);
        }

        #[test]
        fn no_input_panics(payload in hostile_payload(), count in 0usize..5000) {
            check_decoder(decode_times, &payload, count)?;
            check_decoder(decode_floats, &payload, count)?;
            check_decoder(decode_integers, &payload, count)?;
            check_decoder(decode_unsigned, &payload, count)?;
            check_decoder(decode_booleans, &payload, count)?;
            check_decoder(decode_strings, &payload, count)?;
        }
    }

    #[test]
    fn edge_blocks_round_trip() {
        for n in 0..4 {
            check_times(&vec![i64::MAX; n]);
            check_times(&[i64::MIN, i64::MAX, i64::MIN, 0][..n]);
            check_floats(&[-0.0, f64::NAN, 1.5, f64::INFINITY][..n]);
            check_floats(&vec![0.1; n]);
            check_floats(&[4503599627370497.0, -9007199254740991.0, 1e18, 0.5][..n]);
            check_integers(&[i64::MIN, i64::MAX, -1, 0][..n]);
            check_unsigned(&[u64::MAX, 0, u64::MAX, 1][..n]);
            check_booleans(&[true, false, false, true][..n]);
            check_strings(&vec![b"x".to_vec(); n]);
        }
    }

    #[test]
    fn decimal_exponent_is_the_smallest_exact_one() {
        assert_eq!(decimal_exponent(&[1.0, 2.5, 0.25]), Some(2));
        assert_eq!(decimal_exponent(&[0.1, 0.2, 0.3]), Some(1));
        assert_eq!(
            decimal_exponent(&[4503599627370497.0, 9007199254740991.0]),
            Some(0)
        );
        assert_eq!(decimal_exponent(&[123.456789]), Some(6));
        assert_eq!(decimal_exponent(&[1.0, -0.0]), None);
        assert_eq!(decimal_exponent(&[f64::NAN]), None);
        assert_eq!(decimal_exponent(&[f64::INFINITY]), None);
        assert_eq!(decimal_exponent(&[1e-300]), None);
    }

    #[test]
    fn every_tag_is_unique_and_named() {
        let mut tags: Vec<u8> = ALL_TAGS.iter().map(|t| t.0).collect();
        let mut names: Vec<&str> = ALL_TAGS.iter().map(|t| t.1).collect();
        tags.sort_unstable();
        tags.dedup();
        names.sort_unstable();
        names.dedup();
        assert_eq!(tags.len(), ALL_TAGS.len());
        assert_eq!(names.len(), ALL_TAGS.len());
        for (tag, name) in ALL_TAGS {
            assert_eq!(codec_name(tag), name);
        }
        let known = (0..=255u8).filter(|&t| codec_name(t) != "unknown").count();
        assert_eq!(known, ALL_TAGS.len());
        assert_eq!(codec_name(0), "unknown");
        let message = CodecError::UnknownCodec(FLOAT_XOR).to_string();
        assert!(message.contains("0x12 (float-xor)"), "{message}");
    }

    #[test]
    fn decoders_reject_what_they_should() {
        let mut out = Vec::new();
        assert_eq!(decode_times(&[], 0, &mut out), Err(CodecError::Truncated));
        assert_eq!(
            decode_times(&[0], 0, &mut out),
            Err(CodecError::UnknownCodec(0))
        );
        assert_eq!(decode_times(&[TS_RAW, 1], 0, &mut out), Err(TRAILING));
        assert_eq!(
            decode_times(&[TS_RAW, 1], 1, &mut out),
            Err(CodecError::Truncated)
        );
        let mut payload = Vec::new();
        encode_times(&[1, 2, 3], &mut payload);
        payload.push(0);
        assert_eq!(decode_times(&payload, 3, &mut out), Err(TRAILING));
        assert!(out.is_empty());
        // A window past 64 bits.
        let mut bad = vec![FLOAT_XOR];
        bad.extend_from_slice(&1f64.to_bits().to_le_bytes());
        let mut w = BitWriter::new(&mut bad);
        w.write(0b11 | 40 << 2 | 40 << 8, 14);
        w.write(0, 41);
        w.finish();
        assert!(matches!(
            decode_floats(&bad, 2, &mut Vec::new()),
            Err(CodecError::Corrupt(_))
        ));
        // A float-decimal exponent of 19.
        assert!(matches!(
            decode_floats(&[FLOAT_DECIMAL, 19, INT_RAW], 0, &mut Vec::new()),
            Err(CodecError::Corrupt(_))
        ));
        // A dictionary index past the dictionary.
        let bad = [STR_DICT, 3, 1, b'a', 1, b'b', 1, b'c', 0b11];
        assert!(matches!(
            decode_strings(&bad, 1, &mut Vec::new()),
            Err(CodecError::Corrupt(_))
        ));
        // Overlong varints.
        let bad = [
            INT_VARINT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert!(matches!(
            decode_integers(&bad, 1, &mut Vec::new()),
            Err(CodecError::Corrupt(_))
        ));
        // Every unsigned-max varint still decodes.
        let mut ok = vec![UINT_VARINT];
        put_varint(&mut ok, u64::MAX);
        let mut out = Vec::new();
        decode_unsigned(&ok, 1, &mut out).unwrap();
        assert_eq!(out, [(unzz(u64::MAX)) as u64]);
    }

    #[test]
    fn bit_stream_round_trips_every_width() {
        let mut rng = Rng(99);
        let fields: Vec<(u64, u32)> = (0..2000)
            .map(|i| (rng.next(), (i * 7 % 65) as u32))
            .collect();
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        for &(v, n) in &fields {
            w.write(v, n);
        }
        w.finish();
        let total: u64 = fields.iter().map(|f| u64::from(f.1)).sum();
        assert_eq!(buf.len() as u64, total.div_ceil(8));
        let mut r = BitReader::new(&buf);
        for &(v, n) in &fields {
            assert_eq!(r.read(n).unwrap(), v & low_bits(n));
        }
        r.finish().unwrap();
        assert!(r.read(8).is_err());
    }

    // --- Realistic data. ---

    const START_NS: i64 = 1_700_000_000_000_000_000;
    const TEN_S: i64 = 10_000_000_000;

    fn report(what: &str, payload: &[u8], n: usize) -> f64 {
        let per_value = payload.len() as f64 / n as f64;
        println!(
            "{what}: {} -> {} bytes for {n} values, {per_value:.3} bytes/value",
            codec_name(payload[0]),
            payload.len()
        );
        per_value
    }

    #[test]
    fn regular_timestamps_take_a_few_bytes() {
        let ts: Vec<i64> = (0..1000).map(|i| START_NS + i * TEN_S).collect();
        let mut out = Vec::new();
        encode_times(&ts, &mut out);
        report("timestamps, 10 s regular", &out, ts.len());
        assert_eq!(out[0], TS_RLE);
        assert!(out.len() <= 16);
        check_times(&ts);
    }

    /// Prints what every timestamp codec would take for `ts`.
    fn report_alternatives(ts: &[i64]) {
        let sizes: Vec<String> = times_all(ts)
            .iter()
            .map(|p| {
                let per_value = p.len() as f64 / ts.len() as f64;
                format!("{} {per_value:.3}", codec_name(p[0]))
            })
            .collect();
        println!("    (bytes/value by codec: {})", sizes.join(", "));
    }

    #[test]
    fn jittered_timestamps() {
        let mut rng = Rng(7);
        for (what, jitter_every, jitter_ms, codec) in [
            (
                "timestamps, 10 s, 1 in 10 jittered by up to 5 ms",
                10,
                5,
                TS_DOD,
            ),
            (
                "timestamps, 10 s, 1 in 100 jittered by up to 5 ms",
                100,
                5,
                TS_DOD,
            ),
            (
                "timestamps, 10 s, all jittered by up to 3 ms",
                1,
                3,
                TS_PACK,
            ),
        ] {
            let ts: Vec<i64> = (0..1000)
                .map(|i| {
                    let jitter = if rng.below(jitter_every) == 0 {
                        rng.below(2 * jitter_ms * 1_000_000) as i64 - jitter_ms as i64 * 1_000_000
                    } else {
                        0
                    };
                    START_NS + i * TEN_S + jitter
                })
                .collect();
            let mut out = Vec::new();
            encode_times(&ts, &mut out);
            let per_value = report(what, &out, ts.len());
            report_alternatives(&ts);
            assert_eq!(out[0], codec);
            assert!(per_value < 3.5);
            check_times(&ts);
        }
        // Millisecond stamps, 10 s apart, each late by 0-4 ms.
        let ts: Vec<i64> = (0..1000)
            .map(|i| 1_700_000_000_000 + i * 10_000 + rng.below(5) as i64)
            .collect();
        let mut out = Vec::new();
        encode_times(&ts, &mut out);
        let per_value = report(
            "timestamps, ms precision, 10 s with 0-4 ms jitter",
            &out,
            ts.len(),
        );
        report_alternatives(&ts);
        assert!(per_value < 0.6);
        check_times(&ts);
        // Out of order: still lossless, never above raw.
        let ts: Vec<i64> = (0..1000)
            .map(|_| START_NS + rng.below(1 << 40) as i64)
            .collect();
        let mut out = Vec::new();
        encode_times(&ts, &mut out);
        report("timestamps, unordered within ~18 min", &out, ts.len());
        assert!(out.len() <= 1 + 8 * ts.len());
        check_times(&ts);
    }

    #[test]
    fn cpu_like_floats_use_decimal() {
        let mut rng = Rng(11);
        // Uniform 0.0..100.0 at 0.1.
        let v: Vec<f64> = (0..1000).map(|_| rng.below(1001) as f64 / 10.0).collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        let per_value = report("floats, uniform 0..100 at 0.1", &out, v.len());
        assert_eq!(out[0], FLOAT_DECIMAL);
        assert_eq!(out[1], 1);
        assert!(per_value < 2.0);
        check_floats(&v);
        // A random walk at 0.01 (usage_user-like).
        let mut x = 5000i64;
        let v: Vec<f64> = (0..1000)
            .map(|_| {
                x = (x + rng.below(201) as i64 - 100).clamp(0, 10_000);
                x as f64 / 100.0
            })
            .collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        let per_value = report("floats, random walk 0..100 at 0.01", &out, v.len());
        assert_eq!(out[0], FLOAT_DECIMAL);
        assert!(per_value < 2.0);
        check_floats(&v);
        // A gauge that rarely changes.
        let v: Vec<f64> = (0..1000).map(|i| 42.5 + (i / 100) as f64).collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        let per_value = report("floats, step gauge", &out, v.len());
        assert!(per_value < 0.5);
        check_floats(&v);
    }

    #[test]
    fn other_floats_never_cost_more_than_raw() {
        let mut rng = Rng(13);
        let v: Vec<f64> = (0..1000).map(|_| f64::from_bits(rng.next())).collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        report("floats, random bits", &out, v.len());
        assert!(out[0] == FLOAT_XOR || out[0] == FLOAT_RAW);
        assert!(out.len() <= 1 + 8 * v.len());
        check_floats(&v);
        let v: Vec<f64> = (0..1000)
            .map(|_| rng.next() as f64 / u64::MAX as f64)
            .collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        report("floats, random in 0..1", &out, v.len());
        assert!(out.len() <= 1 + 8 * v.len());
        check_floats(&v);
        let v: Vec<f64> = (0..1000).map(|i| (i as f64 / 50.0).sin()).collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        report("floats, sine", &out, v.len());
        assert!(out.len() <= 1 + 8 * v.len());
        check_floats(&v);
        let v: Vec<f64> = (0..1000).map(|i| (i / 10) as f64 * 0.3).collect();
        let mut out = Vec::new();
        encode_floats(&v, &mut out);
        report(
            "floats, multiples of 0.3 repeated (rounding noise)",
            &out,
            v.len(),
        );
        check_floats(&v);
    }

    #[test]
    fn realistic_integers_and_unsigned() {
        let mut rng = Rng(17);
        let mut total = 1_000_000i64;
        let v: Vec<i64> = (0..1000)
            .map(|_| {
                total += rng.below(5000) as i64;
                total
            })
            .collect();
        let mut out = Vec::new();
        encode_integers(&v, &mut out);
        let per_value = report("integers, counter +0..5000", &out, v.len());
        assert_eq!(out[0], INT_PACK);
        assert!(per_value < 2.0);
        check_integers(&v);
        let v: Vec<u64> = (0..1000).map(|_| rng.below(100)).collect();
        let mut out = Vec::new();
        encode_unsigned(&v, &mut out);
        report("unsigned, random 0..100", &out, v.len());
        check_unsigned(&v);
        let v: Vec<i64> = vec![3; 1000];
        let mut out = Vec::new();
        encode_integers(&v, &mut out);
        report("integers, constant", &out, v.len());
        assert!(out.len() <= 4);
    }

    #[test]
    fn realistic_booleans() {
        let mut rng = Rng(19);
        let v: Vec<bool> = (0..1000).map(|_| rng.below(2) == 0).collect();
        let mut out = Vec::new();
        encode_booleans(&v, &mut out);
        report("booleans, random", &out, v.len());
        assert_eq!(out.len(), 126);
        check_booleans(&v);
        let v = vec![true; 1000];
        let mut out = Vec::new();
        encode_booleans(&v, &mut out);
        report("booleans, all true", &out, v.len());
        assert_eq!(out, [BOOL_RLE, 1]);
        check_booleans(&v);
        let v: Vec<bool> = (0..1000).map(|i| i % 300 < 250).collect();
        let mut out = Vec::new();
        encode_booleans(&v, &mut out);
        report("booleans, long runs", &out, v.len());
        assert_eq!(out[0], BOOL_RLE);
        check_booleans(&v);
    }

    #[test]
    fn few_distinct_strings_use_the_dictionary() {
        let mut rng = Rng(23);
        let statuses: [&[u8]; 3] = [b"ok", b"warning", b"critical"];
        let v: Vec<Vec<u8>> = (0..1000)
            .map(|_| statuses[rng.below(3) as usize].to_vec())
            .collect();
        let mut out = Vec::new();
        encode_strings(v.iter().map(|s| s.as_slice()), &mut out);
        let per_value = report("strings, 3 statuses", &out, v.len());
        assert_eq!(out[0], STR_DICT);
        assert!(per_value < 0.3);
        check_strings(&v);
        let v: Vec<Vec<u8>> = (0..1000)
            .map(|i| format!("request-{i}").into_bytes())
            .collect();
        let mut out = Vec::new();
        encode_strings(v.iter().map(|s| s.as_slice()), &mut out);
        report("strings, all distinct", &out, v.len());
        assert_eq!(out[0], STR_RAW);
        check_strings(&v);
    }
}
