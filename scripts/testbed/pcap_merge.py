#!/usr/bin/env python3
"""Merge classic pcap files (same linktype) by timestamp: pcap_merge.py OUT.pcap IN.pcap...

Used by scripts/testbed.sh when one scenario group is tapped on two interfaces."""
import heapq
import struct
import sys


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\xd4\xc3\xb2\xa1":
        raise SystemExit(f"{path}: expected a little-endian microsecond pcap (tcpdump -w)")
    hdr = data[:24]
    off = 24
    out = []
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        out.append(((sec, usec), data[off:off + 16 + incl]))
        off += 16 + incl
    return hdr, out


def main():
    outp, ins = sys.argv[1], sys.argv[2:]
    parsed = [records(p) for p in ins]
    linktypes = {h[20:24] for h, _ in parsed}
    if len(linktypes) != 1:
        raise SystemExit("inputs have different linktypes")
    hdr = parsed[0][0]
    merged = heapq.merge(*[[(ts, i, n, rec) for n, (ts, rec) in enumerate(recs)]
                           for i, (_, recs) in enumerate(parsed)])
    with open(outp, "wb") as f:
        f.write(hdr)
        for _ts, _i, _n, rec in merged:
            f.write(rec)


if __name__ == "__main__":
    main()
