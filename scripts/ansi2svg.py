#!/usr/bin/env python3
"""ansi2svg.py COLS ROWS < capture.txt > screen.svg

Turns a terminal capture with SGR colour codes (`tmux capture-pane -e -p`)
into an SVG of the screen: one monospace cell per character, the 8 basic
colours (and their bright variants), bold and reverse video. Used by
scripts/screenshots; rsvg-convert turns the SVG into the PNG in the README.
"""
import html
import re
import sys

COLS, ROWS = int(sys.argv[1]), int(sys.argv[2])
CW, CH = 9, 18  # cell size in pixels
FG, BG = "#d0d0d0", "#1c1c1c"
PALETTE = ["#1c1c1c", "#d75f5f", "#87af5f", "#d7af5f", "#5f87d7", "#af5faf", "#5fafaf", "#d0d0d0"]
BRIGHT = ["#767676", "#ff8787", "#afd787", "#ffd787", "#87afff", "#d787d7", "#87d7d7", "#ffffff"]

text = sys.stdin.read()
cells = [[(" ", FG, BG, False) for _ in range(COLS)] for _ in range(ROWS)]
fg, bg, bold, rev = FG, BG, False, False
sgr = re.compile(r"\x1b\[([0-9;:]*)m")
for y, line in enumerate(text.split("\n")[:ROWS]):
    x, i = 0, 0
    while i < len(line) and x < COLS:
        m = sgr.match(line, i)
        if m:
            codes = [int(c) for c in re.split("[;:]", m.group(1)) if c] or [0]
            j = 0
            while j < len(codes):
                c = codes[j]
                if c == 0:
                    fg, bg, bold, rev = FG, BG, False, False
                elif c == 1:
                    bold = True
                elif c == 22:
                    bold = False
                elif c == 7:
                    rev = True
                elif c == 27:
                    rev = False
                elif 30 <= c <= 37:
                    fg = PALETTE[c - 30]
                elif c == 39:
                    fg = FG
                elif 40 <= c <= 47:
                    bg = PALETTE[c - 40]
                elif c == 49:
                    bg = BG
                elif 90 <= c <= 97:
                    fg = BRIGHT[c - 90]
                elif 100 <= c <= 107:
                    bg = BRIGHT[c - 100]
                elif c in (38, 48) and j + 2 < len(codes) and codes[j + 1] == 5:
                    n = codes[j + 2]
                    col = (PALETTE + BRIGHT)[n] if n < 16 else FG
                    if c == 38:
                        fg = col
                    else:
                        bg = col
                    j += 2
                j += 1
            i = m.end()
            continue
        ch = line[i]
        f, b = (bg, fg) if rev else (fg, bg)
        cells[y][x] = (ch, f, b, bold)
        x += 1
        i += 1

out = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{COLS * CW}" height="{ROWS * CH}" '
    f'font-family="DejaVu Sans Mono, monospace" font-size="15">',
    f'<rect width="100%" height="100%" fill="{BG}"/>',
]
for y, row in enumerate(cells):
    for x, (ch, f, b, bo) in enumerate(row):
        if b != BG:
            out.append(f'<rect x="{x * CW}" y="{y * CH}" width="{CW}" height="{CH}" fill="{b}"/>')
    for x, (ch, f, b, bo) in enumerate(row):
        if ch != " ":
            weight = ' font-weight="bold"' if bo else ""
            out.append(
                f'<text x="{x * CW}" y="{y * CH + 14}" fill="{f}"{weight} '
                f'textLength="{CW}" lengthAdjust="spacingAndGlyphs">{html.escape(ch)}</text>'
            )
out.append("</svg>")
print("\n".join(out))
