package console

import "strings"

// Cell is one table cell: its text and how to style it (nil: plain).
type Cell struct {
	Text  string
	Style func(string) string
}

// Table is rows of cells under a header, in aligned columns two spaces
// apart.
type Table struct {
	Header []string
	Right  []bool // right-aligned columns (numbers, times)
	Rows   [][]Cell
}

// Lines renders the table, header in bold, to fit width cells (0: no
// limit): the last column is cut to what is left.
func (t Table) Lines(p Palette, width int) []string {
	cols := len(t.Header)
	widths := make([]int, cols)
	for i, h := range t.Header {
		widths[i] = Width(h)
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < cols-1 { // the last column is never padded
				widths[i] = max(widths[i], Width(c.Text))
			}
		}
	}
	render := func(cells []Cell, bold bool) string {
		var b strings.Builder
		used := 0
		for i, c := range cells {
			if i >= cols {
				break
			}
			if i > 0 {
				b.WriteString("  ")
				used += 2
			}
			text := c.Text
			if i == cols-1 {
				if width > 0 {
					text = Truncate(text, width-used-1)
				}
			} else {
				text = Pad(text, widths[i], i < len(t.Right) && t.Right[i])
			}
			used += Width(text)
			switch {
			case bold:
				text = p.Bold(text)
			case c.Style != nil && text != "":
				text = c.Style(text)
			}
			b.WriteString(text)
		}
		return strings.TrimRight(b.String(), " ")
	}
	header := make([]Cell, cols)
	for i, h := range t.Header {
		header[i] = Cell{Text: h}
	}
	lines := []string{render(header, true)}
	for _, r := range t.Rows {
		lines = append(lines, render(r, false))
	}
	return lines
}
