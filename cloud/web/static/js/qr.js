// A QR code for a visitor pass's token, drawn as SVG in the browser: the token is shown once, when the
// pass is made, so the server cannot draw it later. Written from ISO/IEC 18004: byte mode, error
// correction level M, versions 1 to 6 (up to 106 bytes; a pass token is 32), the mask with the lowest
// penalty. QR.matrix(text) gives the modules (true = dark); QR.svg(text) draws them.
"use strict";

const QR = (() => {
  // per version (index 1..6) at level M: error-correction codewords per block, and the blocks' data codewords
  const BLOCKS = [null, [10, [16]], [16, [28]], [26, [44]], [18, [32, 32]], [24, [43, 43]], [16, [27, 27, 27, 27]]];
  const ALIGNMENT = [null, [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34]];

  // GF(256) with the polynomial x^8 + x^4 + x^3 + x^2 + 1
  const EXP = new Array(512);
  const LOG = new Array(256);
  for (let i = 0, x = 1; i < 255; i += 1) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i += 1) EXP[i] = EXP[i - 255];
  const mul = (a, b) => (a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]);

  // the generator polynomial of degree n, highest coefficient first: (x - a^0)(x - a^1)...(x - a^(n-1))
  function generator(n) {
    let g = [1];
    for (let i = 0; i < n; i += 1) {
      const next = new Array(g.length + 1).fill(0);
      for (let j = 0; j < g.length; j += 1) {
        next[j] ^= g[j];
        next[j + 1] ^= mul(g[j], EXP[i]);
      }
      g = next;
    }
    return g;
  }

  // the n error-correction codewords of `data`: the remainder of data(x)·x^n divided by the generator
  function correction(data, n) {
    const g = generator(n);
    const work = [...data, ...new Array(n).fill(0)];
    for (let i = 0; i < data.length; i += 1) {
      const factor = work[i];
      if (factor === 0) continue;
      for (let j = 1; j < g.length; j += 1) work[i + j] ^= mul(g[j], factor);
    }
    return work.slice(data.length);
  }

  // the codewords in the order they are placed: data interleaved across blocks, then correction
  function codewords(bytes) {
    let version = 1;
    while (version <= 6) {
      const capacity = BLOCKS[version][1].reduce((a, b) => a + b, 0);
      if (4 + 8 + 8 * bytes.length <= capacity * 8) break;
      version += 1;
    }
    if (version > 6) throw new Error("QR: the text is too long for versions 1 to 6");
    const [ecLength, blockSizes] = BLOCKS[version];
    const capacity = blockSizes.reduce((a, b) => a + b, 0);
    const bits = [];
    const push = (value, count) => {
      for (let i = count - 1; i >= 0; i -= 1) bits.push((value >>> i) & 1);
    };
    push(0b0100, 4); // byte mode
    push(bytes.length, 8);
    bytes.forEach((b) => push(b, 8));
    push(0, Math.min(4, capacity * 8 - bits.length)); // terminator
    while (bits.length % 8) bits.push(0);
    const data = [];
    for (let i = 0; i < bits.length; i += 8) data.push(bits.slice(i, i + 8).reduce((a, b) => (a << 1) | b, 0));
    for (let pad = 0xec; data.length < capacity; pad ^= 0xec ^ 0x11) data.push(pad);

    const blocks = [];
    let offset = 0;
    for (const size of blockSizes) {
      const block = data.slice(offset, offset + size);
      offset += size;
      blocks.push({ data: block, ec: correction(block, ecLength) });
    }
    const out = [];
    const longest = Math.max(...blockSizes);
    for (let i = 0; i < longest; i += 1) blocks.forEach((b) => i < b.data.length && out.push(b.data[i]));
    for (let i = 0; i < ecLength; i += 1) blocks.forEach((b) => out.push(b.ec[i]));
    return { version, codewords: out };
  }

  const MASKS = [
    (r, c) => (r + c) % 2 === 0,
    (r) => r % 2 === 0,
    (r, c) => c % 3 === 0,
    (r, c) => (r + c) % 3 === 0,
    (r, c) => (Math.floor(r / 2) + Math.floor(c / 3)) % 2 === 0,
    (r, c) => ((r * c) % 2) + ((r * c) % 3) === 0,
    (r, c) => (((r * c) % 2) + ((r * c) % 3)) % 2 === 0,
    (r, c) => (((r + c) % 2) + ((r * c) % 3)) % 2 === 0,
  ];

  // the 15 format bits for level M (00) and a mask: BCH(15,5), then XOR 101010000010010
  function formatBits(mask) {
    const data = (0b00 << 3) | mask;
    let rem = data;
    for (let i = 0; i < 10; i += 1) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
    return ((data << 10) | (rem & 0x3ff)) ^ 0x5412;
  }

  function build(bytes, mask) {
    const { version, codewords: words } = codewords(bytes);
    const size = 17 + 4 * version;
    const dark = Array.from({ length: size }, () => new Array(size).fill(false));
    const fixed = Array.from({ length: size }, () => new Array(size).fill(false));
    const set = (r, c, value) => {
      dark[r][c] = value;
      fixed[r][c] = true;
    };

    // finder patterns with their light separators
    for (const [top, left] of [
      [0, 0],
      [0, size - 7],
      [size - 7, 0],
    ]) {
      for (let r = -1; r <= 7; r += 1) {
        for (let c = -1; c <= 7; c += 1) {
          const rr = top + r;
          const cc = left + c;
          if (rr < 0 || rr >= size || cc < 0 || cc >= size) continue;
          const ring = Math.max(Math.abs(r - 3), Math.abs(c - 3));
          set(rr, cc, ring !== 2 && ring !== 4);
        }
      }
    }
    // timing patterns
    for (let i = 8; i < size - 8; i += 1) {
      set(6, i, i % 2 === 0);
      set(i, 6, i % 2 === 0);
    }
    // alignment patterns, except where a finder is
    const centers = ALIGNMENT[version];
    for (const r of centers) {
      for (const c of centers) {
        if ((r === 6 && c === 6) || (r === 6 && c === centers.at(-1)) || (r === centers.at(-1) && c === 6)) continue;
        for (let dr = -2; dr <= 2; dr += 1) {
          for (let dc = -2; dc <= 2; dc += 1) set(r + dr, c + dc, Math.max(Math.abs(dr), Math.abs(dc)) !== 1);
        }
      }
    }
    // format information (both copies) and the dark module
    const format = formatBits(mask);
    const bit = (i) => ((format >>> i) & 1) === 1;
    for (let i = 0; i <= 5; i += 1) set(i, 8, bit(i));
    set(7, 8, bit(6));
    set(8, 8, bit(7));
    set(8, 7, bit(8));
    for (let i = 9; i < 15; i += 1) set(8, 14 - i, bit(i));
    for (let i = 0; i < 8; i += 1) set(8, size - 1 - i, bit(i));
    for (let i = 8; i < 15; i += 1) set(size - 15 + i, 8, bit(i));
    set(size - 8, 8, true);

    // data: two columns at a time from the right, upwards then downwards, skipping the timing column
    let index = 0;
    const total = words.length * 8;
    for (let right = size - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      const upward = ((right + 1) & 2) === 0;
      for (let step = 0; step < size; step += 1) {
        const r = upward ? size - 1 - step : step;
        for (let c = right; c >= right - 1; c -= 1) {
          if (fixed[r][c]) continue;
          const value = index < total && ((words[index >>> 3] >>> (7 - (index & 7))) & 1) === 1;
          index += 1;
          dark[r][c] = value !== MASKS[mask](r, c);
        }
      }
    }
    return dark;
  }

  // the standard's penalty: runs, 2x2 blocks, finder-like patterns, and the dark share
  function penalty(m) {
    const size = m.length;
    let score = 0;
    const line = (get) => {
      let run = 1;
      for (let i = 1; i <= size; i += 1) {
        if (i < size && get(i) === get(i - 1)) run += 1;
        else {
          if (run >= 5) score += 3 + run - 5;
          run = 1;
        }
      }
      const at = (i) => i >= 0 && i < size && get(i);
      for (let i = 0; i + 6 < size; i += 1) {
        const core = [1, 0, 1, 1, 1, 0, 1].every((v, k) => at(i + k) === (v === 1));
        if (!core) continue;
        const before = [1, 2, 3, 4].every((k) => !at(i - k));
        const after = [7, 8, 9, 10].every((k) => !at(i + k));
        if (before || after) score += 40;
      }
    };
    for (let i = 0; i < size; i += 1) {
      line((k) => m[i][k]);
      line((k) => m[k][i]);
    }
    let darkCount = 0;
    for (let r = 0; r < size; r += 1) {
      for (let c = 0; c < size; c += 1) {
        if (m[r][c]) darkCount += 1;
        if (r + 1 < size && c + 1 < size) {
          const v = m[r][c];
          if (m[r][c + 1] === v && m[r + 1][c] === v && m[r + 1][c + 1] === v) score += 3;
        }
      }
    }
    score += 10 * Math.floor(Math.abs((darkCount * 100) / (size * size) - 50) / 5);
    return score;
  }

  function matrix(text) {
    const bytes = [...new TextEncoder().encode(text)];
    let best = null;
    let bestScore = Infinity;
    for (let mask = 0; mask < 8; mask += 1) {
      const m = build(bytes, mask);
      const score = penalty(m);
      if (score < bestScore) {
        best = m;
        bestScore = score;
      }
    }
    return best;
  }

  const SVG = "http://www.w3.org/2000/svg";

  // an <svg> of the code with its quiet zone (4 modules), black on white
  function svg(text, title) {
    const m = matrix(text);
    const quiet = 4;
    const full = m.length + 2 * quiet;
    const node = document.createElementNS(SVG, "svg");
    node.setAttribute("viewBox", `0 0 ${full} ${full}`);
    node.setAttribute("shape-rendering", "crispEdges");
    node.setAttribute("role", "img");
    node.setAttribute("aria-label", title || "QR code");
    const background = document.createElementNS(SVG, "rect");
    background.setAttribute("width", full);
    background.setAttribute("height", full);
    background.setAttribute("fill", "#fff");
    const path = document.createElementNS(SVG, "path");
    let d = "";
    m.forEach((row, r) =>
      row.forEach((on, c) => {
        if (on) d += `M${c + quiet} ${r + quiet}h1v1h-1z`;
      }),
    );
    path.setAttribute("d", d);
    path.setAttribute("fill", "#000");
    node.append(background, path);
    return node;
  }

  return { matrix, svg };
})();

if (typeof module !== "undefined") module.exports = QR;
