// q8/q4 row quantization and the fixed f32 Hadamard rotation (spec 4.2)
// against vectors of the float64/numpy reference (llm_attention_ref.py,
// printed once and embedded here, bit for bit).
#include <vector>

#include "doctest/doctest.h"
#include "src/quantize.h"
#include "tests/quantize_util.h"

namespace gqa {
namespace test {
namespace {

// Printed by the reference (quantize, dequantize, fwht_f32 of
// llm_attention_ref.py) for rows rng = default_rng(seed);
// x = f32(standard_normal(n) * amp); x[seed % n] *= 9.
struct RefRow {
  std::vector<uint32_t> x;
  std::vector<int> q8;
  uint16_t q8_scale;
  std::vector<uint32_t> q8_deq;
  std::vector<int> q4;  // empty when n % 32 != 0
  std::vector<uint16_t> q4_scales;
  std::vector<uint8_t> q4_packed;
  std::vector<uint32_t> rotated;
};

const RefRow kRefRows[] = {
    // seed 11, n 32, amp 3
    {{0x3DD21493u, 0x40828928u, 0x406B257Eu, 0xBFC3F53Au, 0xBF64D731u,
      0xBFCA83FAu, 0x3FDAC661u, 0xBE2C3ADEu, 0x400F66ECu, 0xC0B157DBu,
      0x40966381u, 0xC026A280u, 0x4002A1F6u, 0xBED1C411u, 0xBF9192E8u,
      0x3FB1D595u, 0x401E4E7Du, 0xBF1B8AFEu, 0xBEEAADF8u, 0x4003A775u,
      0xC0271AFCu, 0xC091617Du, 0x3F97AC4Cu, 0xC000BFA7u, 0xC0B85A4Au,
      0xC01C4C5Eu, 0xBFB38EB6u, 0xC065184Au, 0xC08F46CBu, 0x3DE11A52u,
      0x402C4598u, 0xBF330BA2u},
     {2,   90,  81,   -34, -20, -35, 38,  -4,  49, -122, 104,
      -57, 45,  -9,   -25, 31,  55,  -13, -10, 45, -58,  -100,
      26,  -44, -127, -54, -31, -79, -99, 2,   59, -15},
     0x29CE,
     {0x3DB9C000u, 0x40829B00u, 0x406B1700u, 0xBFC55C00u, 0xBF683000u,
      0xBFCB2A00u, 0x3FDC9400u, 0xBE39C000u, 0x400E3700u, 0xC0B10B00u,
      0x4096EC00u, 0xC0256F00u, 0x40029B00u, 0xBED0F800u, 0xBF911E00u,
      0x3FB3F200u, 0x401FA100u, 0xBF16EC00u, 0xBEE83000u, 0x40029B00u,
      0xC0285600u, 0xC0911E00u, 0x3F96EC00u, 0xBFFF6800u, 0xC0B84C80u,
      0xC01CBA00u, 0xBFB3F200u, 0xC0654900u, 0xC08FAA80u, 0x3DB9C000u,
      0x402B3D00u, 0xBF2E2400u},
     {0, 5,  4,  -2, -1, -2, 2, 0,  3,  -7, 6,  -3, 2,  0, -1, 2,
      3, -1, -1, 2,  -3, -6, 1, -2, -7, -3, -2, -4, -5, 0, 3,  -1},
     {0x3A96},
     {184, 125, 124, 166, 87, 38, 154, 104, 27, 81, 110, 69, 58, 136, 183, 122},
     {0xC01E7DE6u, 0x407AB778u, 0xC074CBF8u, 0xC01F06FAu, 0x3F598445u,
      0x3FD2C97Du, 0x3FCBEE9Cu, 0xBF0E697Cu, 0x40324334u, 0xBF10112Du,
      0x3F7B9BF8u, 0x3EB313ADu, 0x40B8711Cu, 0xC06EE6E4u, 0x403846D4u,
      0x3E1FFE5Du, 0x4093E619u, 0x402EC60Cu, 0x3FDA3AA8u, 0x3F3F55D8u,
      0x3F20075Eu, 0x404F6B8Eu, 0xBFEC9067u, 0xC07707DDu, 0xBF8F4A6Fu,
      0xC059C666u, 0xBE860B01u, 0xC0BE4304u, 0xC006B6B4u, 0xC0066D25u,
      0x3FD42BDCu, 0xBFB22425u}},
    // seed 12, n 64, amp 0.01
    {{0xB88F2AFFu, 0x3C2B666Eu, 0x3BF300F2u, 0x3BED39E0u, 0x3C849C33u,
      0xBC4584C6u, 0xBBCD70D6u, 0xBC5860A1u, 0xBA8D3BBEu, 0x3C23A32Fu,
      0xB96623E9u, 0x3BA27D6Fu, 0xBE3018B0u, 0x3AC0C28Cu, 0xBC1497F5u,
      0x3C91709Du, 0x3C114D25u, 0x3C1B8A9Au, 0xBA17A9CFu, 0x3BC8D29Du,
      0x3BD793D4u, 0xBB61B52Eu, 0xBBA2FA97u, 0xBA966F5Bu, 0xBBC664FFu,
      0xBBC2C0CEu, 0xBB39B680u, 0xBBEEB01Cu, 0x3BFB1C3Cu, 0xBC82C05Bu,
      0x3C06EEB3u, 0xBBCCFC52u, 0xBBB2E4C3u, 0xBC5D52A3u, 0xBABD0FA0u,
      0xBB224EB5u, 0x3AFAF1EBu, 0xBBAEE83Cu, 0x3A75C6B5u, 0x3C9511B4u,
      0x3B860562u, 0xBBBBFC9Cu, 0x3C1C2850u, 0xBAA8D27Du, 0x3BC299CDu,
      0x3BC8C8FBu, 0xBB8024F8u, 0xBC9E2110u, 0xBB63D699u, 0x3BB4B36Fu,
      0xBB791BF2u, 0x3B8FD76Au, 0x3C207CE7u, 0xBBB24B8Bu, 0x3C49BEA3u,
      0x3C84DBB4u, 0x3C30CA78u, 0x3C3EF30Eu, 0x3C33B2FAu, 0x3CB8B11Cu,
      0x3AF39C92u, 0x37AED357u, 0x3BC5A04Fu, 0xBC14CC77u},
     {0,  8,   5,  5,  12, -9, -5, -10, -1, 7,  0,  4,  -127, 1,   -7, 13,
      7,  7,   0,  5,  5,  -3, -4, -1,  -4, -4, -2, -5, 6,    -12, 6,  -5,
      -4, -10, -1, -2, 1,  -4, 1,  13,  3,  -4, 7,  -1, 4,    5,   -3, -14,
      -3, 4,   -3, 3,  7,  -4, 9,  12,  8,  9,  8,  17, 1,    0,   4,  -7},
     0x158C,
     {0x00000000u, 0x3C318000u, 0x3BDDE000u, 0x3BDDE000u, 0x3C852000u,
      0xBC47B000u, 0xBBDDE000u, 0xBC5DE000u, 0xBAB18000u, 0x3C1B5000u,
      0x00000000u, 0x3BB18000u, 0xBE301D00u, 0x3AB18000u, 0xBC1B5000u,
      0x3C903800u, 0x3C1B5000u, 0x3C1B5000u, 0x00000000u, 0x3BDDE000u,
      0x3BDDE000u, 0xBB852000u, 0xBBB18000u, 0xBAB18000u, 0xBBB18000u,
      0xBBB18000u, 0xBB318000u, 0xBBDDE000u, 0x3C052000u, 0xBC852000u,
      0x3C052000u, 0xBBDDE000u, 0xBBB18000u, 0xBC5DE000u, 0xBAB18000u,
      0xBB318000u, 0x3AB18000u, 0xBBB18000u, 0x3AB18000u, 0x3C903800u,
      0x3B852000u, 0xBBB18000u, 0x3C1B5000u, 0xBAB18000u, 0x3BB18000u,
      0x3BDDE000u, 0xBB852000u, 0xBC9B5000u, 0xBB852000u, 0x3BB18000u,
      0xBB852000u, 0x3B852000u, 0x3C1B5000u, 0xBBB18000u, 0x3C47B000u,
      0x3C852000u, 0x3C318000u, 0x3C47B000u, 0x3C318000u, 0x3CBC9800u,
      0x3AB18000u, 0x00000000u, 0x3BB18000u, 0xBC1B5000u},
     {0,  0,  0,  0,  1, 0,  0, -1, 0, 0,  0, 0, -7, 0,  0,  1,
      0,  0,  0,  0,  0, 0,  0, 0,  0, 0,  0, 0, 0,  -1, 0,  0,
      -2, -4, 0,  -1, 1, -2, 0, 6,  1, -2, 3, 0, 2,  2,  -1, -6,
      -1, 2,  -1, 1,  3, -2, 4, 5,  3, 4,  3, 7, 1,  0,  2,  -3},
     {0x264A, 0x1A99},
     {136, 136, 136, 136, 137, 136, 136, 135, 136, 136, 136,
      136, 129, 120, 136, 137, 118, 164, 120, 151, 185, 102,
      200, 222, 185, 198, 187, 248, 154, 138, 167, 82},
     {0xBC0A068Eu, 0xBC6F27C2u, 0xBCBF5271u, 0xBC317F4Au, 0x3CEE9057u,
      0x3BECC740u, 0x3C8EBFCAu, 0x3C350895u, 0x3CBDC6EDu, 0x3C9A39D9u,
      0x3C9892E5u, 0x3CFD67B2u, 0xBCF1C577u, 0xBCC77476u, 0xBC795EA2u,
      0xBCF8A854u, 0xBCEE91DAu, 0xBCC97448u, 0xBC988085u, 0xBCAB3E94u,
      0x3CA0CC92u, 0x3D09557Au, 0x3C4519F9u, 0x3C7C5C7Du, 0x3C802A0Bu,
      0x3D045B57u, 0x3C68E946u, 0x3CB323ACu, 0xBC963DDBu, 0xBCF2B84Fu,
      0xBCC80462u, 0xBCAAD439u, 0xBCE5EE01u, 0xBCBC5C1Bu, 0xBC565EBAu,
      0xBC97B025u, 0x3CE23E41u, 0x3C7F1638u, 0x3CC8290Au, 0x3C305E23u,
      0x3CEAA057u, 0x3CFAC0C7u, 0x3D1DC87Eu, 0x3C602D10u, 0x3BD25B74u,
      0xBCE5346Cu, 0xBD1EE8DAu, 0xBC39F4C0u, 0xBB6CF5F0u, 0xBD09DD28u,
      0xBCBA996Du, 0xBCA98DD6u, 0x3D014533u, 0x3C53AA38u, 0x3CC36610u,
      0x3C8C6CC5u, 0x3C3C2132u, 0x3D1F67ABu, 0x3CD37EEDu, 0x3C76E14Cu,
      0xBCD5D3A3u, 0xBD066F8Eu, 0xBCDEA778u, 0xBCC31613u}},
    // seed 13, n 16, amp 1e-6: a subnormal q8 scale
    {{0x35F52EE1u, 0xB64E9557u, 0x358096D4u, 0x33958B79u, 0x35B0EEBAu,
      0x34CF087Bu, 0x35F54021u, 0x330856A2u, 0xB50A9304u, 0x351BD29Fu,
      0x34E7FC51u, 0xB4BF93A1u, 0xB484C52Eu, 0x36D94389u, 0x353D103Au,
      0xB50496E7u},
     {31, -52, 16, 1, 22, 6, 31, 1, -9, 10, 7, -6, -4, 109, 12, -8},
     0x0001,
     {0x35F80000u, 0xB6500000u, 0x35800000u, 0x33800000u, 0x35B00000u,
      0x34C00000u, 0x35F80000u, 0x33800000u, 0xB5100000u, 0x35200000u,
      0x34E00000u, 0xB4C00000u, 0xB4800000u, 0x36DA0000u, 0x35400000u,
      0xB5000000u},
     {},
     {},
     {},
     {0x36265F5Du, 0x3534837Eu, 0x356FB43Eu, 0xB5DF37CBu, 0xB62933EFu,
      0x360AF156u, 0xB608C67Eu, 0x36371D0Eu, 0xB5595604u, 0x3670CF8Cu,
      0xB60D9C64u, 0x36596E8Eu, 0x35288FCCu, 0xB51057B4u, 0x3583004Du,
      0xB49B0FECu}},
};

TEST_CASE("q8/q4/rotation: bit-exact with the numpy reference") {
  int k = 0;
  for (const RefRow& ref : kRefRows) {
    INFO("reference row " << k++);
    const std::vector<float> x = FromBits(ref.x);
    const Q8 r8 = RunQ8(x);
    CHECK(r8.scale == ref.q8_scale);
    CheckCodes8(r8, ref.q8);
    for (size_t i = 0; i < x.size(); ++i) {
      INFO("q8 deq " << i);
      CHECK(BitsOf(r8.deq[i]) == ref.q8_deq[i]);
    }
    if (!ref.q4.empty()) {
      const Q4 r4 = RunQ4(x);
      CHECK(r4.scales == ref.q4_scales);
      CHECK(r4.packed == ref.q4_packed);
      CheckCodes4(r4, ref.q4);
    }
    std::vector<float> rot = x;
    RotateRowF32(rot.data(), static_cast<int64_t>(rot.size()));
    for (size_t i = 0; i < x.size(); ++i) {
      INFO("rotated " << i);
      CHECK(BitsOf(rot[i]) == ref.rotated[i]);
    }
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
