package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// series is one line of the chart: a target and protocol's median tps at
// each client count.
type series struct {
	name   string
	color  string
	dashed bool
	x      []int
	y      []float64
}

var targetColors = map[string]string{direct: "#777777", pgmtsT: "#1f77b4", pgbouncer: "#d62728"}

// selectSeries gathers the select-only medians, one series per target and
// protocol, in the order the points were run.
func selectSeries(s *summary) []series {
	var out []series
	for _, proto := range []string{"simple", "extended"} {
		for _, t := range []string{direct, pgmtsT, pgbouncer} {
			ln := series{name: t + " " + proto, color: targetColors[t], dashed: proto == "extended"}
			for _, p := range s.points {
				if p.Scenario != scSelect || p.Protocol != proto {
					continue
				}
				if v := s.get(p, t).med(fTPS); !math.IsNaN(v) {
					ln.x = append(ln.x, p.Clients)
					ln.y = append(ln.y, v)
				}
			}
			if len(ln.x) > 0 {
				out = append(out, ln)
			}
		}
	}
	return out
}

// writeChart draws tps against clients (log scale) as a plain SVG.
func writeChart(w io.Writer, title string, lines []series) error {
	const (
		width, height          = 720, 420
		left, right, top, bott = 70, 170, 40, 50
		plotW, plotH           = width - left - right, height - top - bott
	)
	var xs []int
	maxY := 0.0
	for _, l := range lines {
		xs = append(xs, l.x...)
		for _, v := range l.y {
			maxY = max(maxY, v)
		}
	}
	slices.Sort(xs)
	xs = slices.Compact(xs)
	if len(xs) == 0 {
		return fmt.Errorf("chart: no data")
	}
	lo, hi := math.Log10(float64(xs[0])), math.Log10(float64(xs[len(xs)-1]))
	if hi == lo {
		lo, hi = lo-1, hi+1
	}
	step := niceStep(maxY / 5)
	topY := math.Max(step, math.Ceil(maxY/step)*step)
	px := func(x int) float64 { return left + (math.Log10(float64(x))-lo)/(hi-lo)*plotW }
	py := func(y float64) float64 { return top + plotH - y/topY*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">%s</text>`+"\n", left, html.EscapeString(title))
	for y := 0.0; y <= topY+step/2; y += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, left+plotW, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, num(y, 0))
	}
	for _, x := range xs {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e0e0e0"/>`+"\n", px(x), px(x), top, top+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", px(x), top+plotH+16, x)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", left, top, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">clients (log scale)</text>`+"\n", left+plotW/2, height-12)
	fmt.Fprintf(&b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">tps</text>`+"\n", top+plotH/2)
	for i, l := range lines {
		dash := ""
		if l.dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		pts := make([]string, len(l.x))
		for j := range l.x {
			pts[j] = fmt.Sprintf("%.1f,%.1f", px(l.x[j]), py(l.y[j]))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), l.color, dash)
		for j := range l.x {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(l.x[j]), py(l.y[j]), l.color)
		}
		ly := top + 10 + i*20
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", left+plotW+12, left+plotW+40, ly, ly, l.color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+plotW+46, ly+4, html.EscapeString(l.name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
