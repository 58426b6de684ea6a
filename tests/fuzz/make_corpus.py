#!/usr/bin/python3
"""Writes the seed corpus of the C ABI fuzzer (tests/fuzz/corpus/): one
small input per entry point and option, in the byte order fuzz_c_abi.cc
decodes (no hostile bytes: the fuzzer mutates towards those).
    /usr/bin/python3 tests/fuzz/make_corpus.py"""
import os
import zlib
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def attention(name, B=1, T=2, S=3, Hkv=1, grp=1, D=4, dt=(0, 0, 0, 0),
              strides=(0, 0, 0, 0), scale=None, causal=0, offset=0,
              window=None, policy=0, kl=0, km=0, mask=None, scores=0,
              pool=0, threads=None, ws=0, bad=(0, 0, 0), kls=(2, 2)):
    b = [0] + list(struct.pack(">Q", zlib.crc32(name.encode())))
    b += [B - 1, T - 1, S - 1, Hkv - 1, D - 1, grp - 1] + list(dt)
    for m in strides:
        b += [m] + ([3, 7, 40] if m == 3 else [])
    b += [0, 64] if scale else [1]
    b += [causal, offset]
    b += [0, window] if window else [1]
    b += [policy, kl, km, 1 if mask else 0, scores, pool]
    b += [0, threads - 1] if threads else [1]
    b += [ws]
    for m in mask or []:
        b += [m]  # per axis (key, query, head, batch): 1 broadcast
    for x in bad:
        b += [241, 1] if x else [0]
    b += list(kls) + [0]  # out does not alias q
    write("attn_" + name, b)


def kv(name, B=1, cap=6, Hkv=1, D=4, dt=0, ring=0, lens=(2, 2), op=2,
       new=2, counts=None, src=0, T=1, grp=2, qdt=0, odt=0, window=None,
       policy=0, pool=0, threads=None):
    b = [1] + [7] * 8 + [B - 1, cap - 1, Hkv - 1, D - 1, dt, ring]
    b += list(lens) + [op]
    if op != 1:
        b += [new, 1 if counts else 0] + [src] + list(counts or (0, 0))
        b += [0, 0]  # no NaN in k_new, v_new
    if op != 0:
        b += [T - 1, grp - 1, qdt, odt, 1, 0]  # scale 0: 1/sqrt(D)
        b += [0, window] if window else [1]
        b += [policy, pool] + ([0, threads - 1] if threads else [1]) + [0, 0]
    write("kv_" + name, b)


def layer(name, cached=0, D=2, Hkv=1, grp=2, Fq=3, Fv=3, Fk=None, bias=1,
          gate=0, window=None, dropout=0, policy=0, dt=0, B=1, T=2, S=3,
          key=0, rank=0, dims=(), qm=0, vm=0, km=0, causal=0, training=0,
          keep=0, scores=0, cap=6, cdt=0, ring=0, lens=(0, 0), pool=0,
          threads=None):
    b = [2 + cached] + [9] * 8 + [D - 1, Hkv - 1, grp - 1, Fq - 1, Fv - 1]
    b += [0, Fk - 1] if Fk else [1]
    b += [bias, gate] + ([0, window] if window else [1])
    b += [dropout, 5, policy, dt, B - 1, T - 1]
    if not cached:
        b += [S - 1]
    b += [key, 0, 0, 0, 0]  # key flag, no NaN, output does not alias query
    if not cached:
        b += [rank]
        for full in dims:
            b += [0 if full else 1]
        b += [qm, vm, km, causal, training, keep, scores]
    else:
        b += [cap - 1, cdt, ring]
        for x in lens:
            b += [1] if x == 0 else [0, x]
    b += ([0, threads - 1] if threads else [1]) + [pool, 0]
    write(("cached_" if cached else "layer_") + name, b)


DIMS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32, 64]


def block(name, B=1, Hkv=1, D=4, dt=0, flags=0, cap=6, bt=2, dv=0, extra=0,
          lens=(2, 2), tmode=0, unset=0, op=2, new=2, counts=None, src=0,
          T=1, grp=2, qdt=0, odt=0, window=None, policy=0, pool=0,
          threads=None, rb=0, rp=1, rg=0):
    """KV cache v2 (fuzz_block_cache.h): head 0xC0, never hostile."""
    b = [0xC0] + list(struct.pack(">Q", zlib.crc32(name.encode())))
    b += [B - 1, Hkv - 1, DIMS.index(D), dt, flags, cap - 1, bt - 1]
    b += [1 if dv else 0]
    if B * -(-cap // bt) < 64:
        b += [extra]
    b += list(lens[:B]) + [tmode, unset, op]
    if op in (0, 2):
        b += [new, 1 if counts else 0, src] + list(counts or ())[:B]
        b += [0, 0]  # no NaN in k_new, v_new
    if op == 3:
        b += [rb, rp, rg]
    if op == 4:  # the layer: grp, Fq, Fv, bias, gate, window, policy, dtype
        b += [grp - 1, 2, 2, 1, 0] + ([0, window] if window else [1])
        b += [policy, qdt, T - 1, 0, 0, 1 if not threads else 0, pool, 0]
    if op in (1, 2):
        b += [T - 1, grp - 1, qdt, odt, 1]  # scale 0: 1/sqrt(D)
        b += [0, window] if window else [1]
        b += [policy, pool] + ([0, threads - 1] if threads else [1])
        b += [0, 0]  # workspace right, no NaN in q
    write("block_" + name, b)


DRAFT_DIMS = [1, 2, 3, 4, 8, 16, 32, 64]


def drafts(name, v2=0, B=1, Hkv=1, D=4, cap=6, bt=2, ring=0, dt=0, rotate=0,
           tmode=0, lens=(4, 4), held=2, ops=()):
    """Draft verification (fuzz_drafts.h): head 0xC8, never hostile. held:
    the held_from mode (0 NULL, 2 natural, 6 empty); ops: (selector, bytes)
    as made by trunc / keep / append / attend below."""
    b = [0xC8] + list(struct.pack(">Q", zlib.crc32(name.encode())))
    b += [v2, B - 1, Hkv - 1, DRAFT_DIMS.index(D), cap - 1, bt - 1, ring]
    b += [dt, rotate, tmode] if v2 else [dt]
    b += list(lens[:B]) + [held, len(ops) - 1]
    for op in ops:
        b += op
    write("drafts_" + name, b)


def trunc(*new):  # new lengths (each in [0, len])
    b = [0]
    for x in new:
        b += [x + 1, 200]
    return b


def keep(batch, drafts, bits):  # drafts <= the held newest tokens
    b = [1, batch, 2, drafts] + list(bits) + [0]
    return b + ([0] if not any(bits) else [])


def append(n):
    return [2, n]


def read(batch, offset, head=0):  # position held_from - 2 + offset (v2)
    return [4, batch, offset, head]


def attend(T=1, grp=1, qdt=0, odt=0, window=None, policy=0, tree=1,
           threads=1, pool=0):  # tree: 0 none, 1 chain, 2 tree, 3 bits
    b = [3, T - 1, grp - 1, qdt, odt, 1] + ([0, window] if window else [1])
    return b + [policy, tree, threads - 1, pool]


ROPE_DIMS = [1, 2, 3, 4, 6, 8, 10, 16, 31, 32, 64, 128]


def rope(name, B=1, T=2, H=1, D=8, style=0, scaling=0, rm=0, rsel=0,
         theta=0, factor=1, llama=(0, 0, 0), norm=0, eps=0, xd=0, yd=0,
         place=0, pos=None, nan=0, amp=0):
    """RoPE (fuzz_rope.h): head 0xCC, never hostile. rm: 0 R = D (0),
    2 R = D, 3 a partial R = 2 (1 + rsel); theta, factor, llama, eps:
    indices into fuzz_rope.h's tables of good values."""
    b = [0xCC] + list(struct.pack(">Q", zlib.crc32(name.encode())))
    b += [B - 1, T - 1, H - 1, ROPE_DIMS.index(D), style, scaling, rm]
    b += [rsel] if rm >= 3 else []
    b += [theta] + ([factor] if scaling else [])
    b += list(llama) if scaling == 2 else []
    b += [norm, eps, xd, yd, place]
    b += {5: [0, 0], 6: [0], 7: [0] if norm else []}.get(place, [])
    b += list(pos or [3 * t + 1 for t in range(B * T)])
    b += [240, 0, 5] if nan else [0]
    b += [amp]  # row size: 0 as drawn, 1 tiny, 2 zero, 3 large
    write("rope_" + name, b)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes(x & 0xFF for x in data))


def main():
    os.makedirs(OUT, exist_ok=True)
    attention("basic")
    attention("gqa_group3", Hkv=2, grp=3, B=2)
    attention("f16_all", dt=(1, 1, 1, 1), scores=1)
    attention("f16_kv", dt=(0, 1, 0, 0))
    attention("head_major", strides=(1, 1, 1, 1))
    attention("padded", strides=(2, 2, 2, 2))
    attention("raw_strides", strides=(3, 0, 0, 0))
    attention("scale", scale=1)
    attention("causal_offset", causal=1, offset=2, T=3, S=5)
    attention("window", window=2, S=5)
    attention("key_lengths", kl=1, B=2, kls=(1, 0))
    attention("key_mask", km=1, B=2)
    attention("mask_full", mask=(0, 0, 0, 0), Hkv=2)
    attention("mask_bcast", mask=(0, 1, 1, 1))
    attention("scores_keras", scores=1, kl=1, kls=(0, 0))
    attention("policy_zero", policy=1, kl=1, kls=(0, 0))
    attention("policy_uniform", policy=2, kl=1, kls=(0, 0))
    attention("pool", pool=1, threads=2, B=2, T=4)
    attention("ws_misaligned", ws=1)
    attention("nan_q", bad=(1, 0, 0))
    kv("append_attend")
    kv("append_only", op=0)
    kv("attend_only", op=1, lens=(3, 3))
    kv("ragged_counts", B=2, counts=(1, 2))
    kv("f16_cache", dt=1, src=0)
    kv("f16_source", src=1)
    kv("ring", ring=1, cap=4, lens=(6, 9), window=3, T=2, new=1)
    kv("window", window=2, lens=(3, 1))
    kv("overflow", lens=(5, 5), new=3)
    kv("pool_f16_out", pool=1, threads=2, qdt=1, odt=1, grp=3)
    block("f32_append_attend")
    block("append_only", op=0, new=3)
    block("attend_only", op=1, lens=(4, 4))
    block("read", op=3, lens=(3, 3), rp=1)
    block("f16", dt=1, src=1, D=8, B=2, lens=(1, 3))
    block("q8", dt=2, D=16, Hkv=2, grp=2, bt=3, cap=9)
    block("q4", dt=3, D=32, bt=4, cap=8, lens=(3, 0))
    block("q4_rotate_d64", dt=3, D=64, flags=2, bt=2, cap=4, lens=(1, 1))
    block("rotate_f32", flags=2, D=8, threads=2, pool=1, B=2)
    block("ring", flags=1, cap=4, bt=3, lens=(6, 9), window=3, T=2, new=1)
    block("ring_long_append", flags=1, cap=5, bt=2, lens=(3, 3), new=11,
          window=2, B=2, counts=(11, 7))
    block("ring_q8_rotate", flags=3, dt=2, D=16, cap=6, bt=4, lens=(8, 8),
          window=4, T=2)
    block("shared_prefix", B=2, tmode=2, lens=(1, 1), new=1)
    block("shuffled_unset", B=2, tmode=1, unset=1, extra=2, lens=(3, 5), op=1,
          window=2)
    block("ragged_f16_out", B=2, counts=(0, 2), qdt=1, odt=1, grp=3)
    block("missing_block", unset=1, lens=(2, 2), new=3, bt=2)
    block("layer_fresh", op=4, lens=(0, 0), T=2, D=8, Hkv=2, B=2)
    block("layer_ring_rotate", op=4, flags=3, D=16, cap=4, bt=2, lens=(0, 0),
          window=2, T=2)
    block("layer_f16_continue", op=4, dt=1, qdt=1, lens=(3, 1), B=2, T=1)
    block("layer_q4", op=4, dt=3, D=32, cap=8, bt=4, lens=(2, 0), T=3,
          threads=2, pool=1)
    drafts("truncate_attend", ops=(trunc(2), append(2), attend(T=2)))
    drafts("keep_chain", lens=(5,), ops=(keep(0, 3, (1, 0, 1)),
                                         attend(T=2, tree=1)))
    drafts("tree_b2", B=2, Hkv=2, lens=(4, 6), ops=(attend(T=3, tree=2,
                                                           grp=2),))
    drafts("tree_bits_uniform", lens=(3,), ops=(attend(T=3, tree=3,
                                                       policy=2),))
    drafts("ring_held", ring=1, cap=4, lens=(9,), ops=(
        trunc(7), attend(T=1, window=2), append(3), keep(0, 2, (0, 1))))
    drafts("ring_no_held", ring=1, cap=4, lens=(9,), held=0,
           ops=(trunc(8), attend(T=2, window=3)))
    drafts("f16", dt=1, D=8, lens=(6,), ops=(keep(0, 4, (1, 1, 0, 1)),
                                             attend(T=3, qdt=1, odt=1)))
    drafts("v2_keep", v2=1, D=8, bt=3, cap=9, lens=(7,), ops=(
        keep(0, 5, (0, 1, 1, 0, 1)), attend(T=3, tree=2)))
    drafts("v2_q8_rotate_ring", v2=1, dt=2, rotate=1, D=16, ring=1, cap=6,
           bt=4, lens=(10,), ops=(trunc(8), keep(0, 3, (1, 0, 1)),
                                  attend(T=2, window=2, tree=1),
                                  read(0, 1)))
    drafts("v2_q4_shared", v2=1, dt=3, D=32, B=2, tmode=2, cap=4, bt=2,
           lens=(3, 3), ops=(keep(1, 2, (0, 1)), append(1), attend(T=1)))
    drafts("v2_f16_truncate", v2=1, dt=1, B=2, lens=(5, 2), held=6, ops=(
        trunc(3, 0), read(0, 5), append(2), attend(T=2, tree=3, policy=1)))
    rope("basic")
    rope("interleaved", style=1, D=16, T=3)
    rope("partial", rm=3, rsel=1, D=10)
    rope("linear", scaling=1, factor=1, B=2)
    rope("llama3", scaling=2, factor=1, D=64, theta=1, pos=(200, 210))
    rope("norm", norm=1, eps=0, D=32, H=2)
    rope("norm_eps0_f16", norm=1, eps=2, xd=1, yd=1, D=6)
    rope("f16_in", xd=1, D=128)
    rope("in_place", place=4, D=16)
    rope("overlap_bad", place=5, D=8)
    rope("positions_big", pos=(200, 203), D=64, theta=2)
    rope("nan", nan=1, norm=1, D=8)
    rope("tiny_rows_norm", norm=1, amp=1, D=16)
    rope("zero_rows_eps0", norm=1, eps=2, amp=2, D=4)
    rope("large_rows_f16_out", amp=3, yd=1, D=8)
    layer("basic")
    layer("no_bias", bias=0)
    layer("gate", gate=1)
    layer("key_features", Fk=2, key=1)
    layer("f16", dt=1, scores=1)
    layer("window", window=2, S=4, T=3)
    layer("mask_rank2", rank=2, dims=(1, 0))
    layer("mask_rank3", rank=3, dims=(1, 1, 0), B=2)
    layer("mask_rank4", rank=4, dims=(1, 1, 1, 1), B=2)
    layer("masks_qvk", qm=1, vm=1, km=1, key=1)
    layer("causal", causal=1)
    layer("dropout_seed", dropout=5, training=1)
    layer("dropout_keep", dropout=5, training=1, keep=1)
    layer("dropout_one", dropout=6, training=1, scores=1)
    layer("policies", policy=1, rank=2, dims=(0, 0))
    layer("pool", pool=1, threads=2, B=2)
    layer("basic", cached=1)
    layer("f16_cache", cached=1, cdt=1)
    layer("ring", cached=1, ring=1, window=3, cap=4)
    layer("continue", cached=1, lens=(2, 0), B=2)
    layer("gate_pool", cached=1, gate=1, pool=1, threads=2)


if __name__ == "__main__":
    main()
