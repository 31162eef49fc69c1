//! Property tests: random bilevel pages round-trip exactly through our MH, MR and MMR encoders,
//! decoded by an independent decoder (`hayro-ccitt`, strict mode), at many widths.

use hayro_ccitt::{DecodeSettings, DecoderContext, EncodingMode};
use proptest::prelude::*;
use t37gw::tiff_f::{encode_mh, encode_mmr, encode_mr};

struct Rows {
    data: Vec<u8>,
    stride: usize,
    width: u32,
}

impl hayro_ccitt::Decoder for Rows {
    fn push_row(&mut self, changes: &[u32]) {
        let mut row = vec![0u8; self.stride];
        for pair in changes.chunks(2) {
            let end = pair.get(1).copied().unwrap_or(self.width);
            for x in pair[0]..end {
                row[(x / 8) as usize] |= 0x80 >> (x % 8);
            }
        }
        self.data.extend_from_slice(&row);
    }
}

fn decode(data: &[u8], width: u32, height: u32, encoding: EncodingMode) -> Vec<u8> {
    let settings = DecodeSettings {
        columns: width,
        rows: height,
        end_of_block: true,
        end_of_line: encoding != EncodingMode::Group4,
        rows_are_byte_aligned: false,
        encoding,
        strict: true,
    };
    let stride = (width as usize).div_ceil(8);
    let mut rows = Rows {
        data: Vec::new(),
        stride,
        width,
    };
    hayro_ccitt::decode(data, &mut rows, &mut DecoderContext::new(settings)).expect("decodes");
    rows.data
}

/// A page of `height` rows built from runs (so long runs and make-up codes occur), padding clear.
fn page(width: u32, height: u32, runs: &[(bool, u16)]) -> Vec<u8> {
    let stride = (width as usize).div_ceil(8);
    let mut data = vec![0u8; stride * height as usize];
    let mut it = runs.iter().cycle();
    for row in data.chunks_mut(stride) {
        let mut x = 0u32;
        while x < width {
            let &(black, len) = it.next().unwrap();
            let end = (x + u32::from(len) + 1).min(width);
            if black {
                for p in x..end {
                    row[(p / 8) as usize] |= 0x80 >> (p % 8);
                }
            }
            x = end;
        }
    }
    data
}

fn widths() -> impl Strategy<Value = u32> {
    prop_oneof![
        1u32..80,
        Just(1728u32),
        Just(2048u32),
        Just(2432u32),
        80u32..5000,
    ]
}

fn runs() -> impl Strategy<Value = Vec<(bool, u16)>> {
    prop::collection::vec(
        (
            any::<bool>(),
            prop_oneof![0u16..4, 0u16..64, 64u16..2600, 2500u16..6000],
        ),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mh_round_trips(width in widths(), height in 1u32..12, runs in runs()) {
        let p = page(width, height, &runs);
        let coded = encode_mh(&p, width, height).unwrap();
        prop_assert_eq!(decode(&coded, width, height, EncodingMode::Group3_1D), p);
    }

    #[test]
    fn mr_round_trips(width in widths(), height in 1u32..12, k in 1u32..9, runs in runs()) {
        let p = page(width, height, &runs);
        let coded = encode_mr(&p, width, height, k).unwrap();
        prop_assert_eq!(decode(&coded, width, height, EncodingMode::Group3_2D), p);
    }

    #[test]
    fn mmr_round_trips(width in widths(), height in 1u32..12, runs in runs()) {
        let p = page(width, height, &runs);
        let coded = encode_mmr(&p, width, height).unwrap();
        prop_assert_eq!(decode(&coded, width, height, EncodingMode::Group4), p);
    }
}
