package tools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
)

const (
	// ImageSize is the width and height, in pixels, of every generated image.
	ImageSize = 256
	// MaxPromptBytes is the longest prompt image_generation accepts, in bytes.
	MaxPromptBytes = 4000
	// ImageMIMEType is the MIME type of the generated images.
	ImageMIMEType = "image/png"

	// promptEchoRunes bounds the prompt quoted back in the result text.
	promptEchoRunes = 80
)

func imageGenerationTool() mcp.Tool {
	return mcp.NewTool(NameImageGeneration,
		mcp.WithDescription("Generate a 256x256 PNG image from a text prompt. The picture is "+
			"abstract (colours, gradient, waves and circles derived from the prompt) and "+
			"deterministic: the same prompt always gives the same image. Returns the image "+
			"(image/png, base64) and a short text describing it."),
		mcp.WithString("prompt",
			mcp.Required(),
			mcp.Description("What to draw: a non-empty text of at most 4000 bytes (UTF-8)."),
			mcp.MinLength(1),
			mcp.MaxLength(MaxPromptBytes),
		),
		mcp.WithToolAnnotation(annotations("Generate an image", false, true)),
	)
}

func handleImageGeneration(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	v, ok := req.GetArguments()["prompt"]
	if !ok || v == nil {
		return mcp.NewToolResultError(`missing required argument "prompt"`), nil
	}
	prompt, ok := v.(string)
	if !ok {
		return mcp.NewToolResultError(`argument "prompt" must be a string`), nil
	}
	switch {
	case prompt == "":
		return mcp.NewToolResultError("the prompt must not be empty"), nil
	case len(prompt) > MaxPromptBytes:
		return mcp.NewToolResultError("the prompt is too long: " + strconv.Itoa(len(prompt)) +
			" bytes, at most " + strconv.Itoa(MaxPromptBytes) + " are allowed"), nil
	}
	data, err := renderPNG(prompt)
	if err != nil {
		return mcp.NewToolResultError("cannot encode the image"), nil
	}
	text := "Generated a " + strconv.Itoa(ImageSize) + "x" + strconv.Itoa(ImageSize) +
		` PNG for "` + truncateRunes(prompt, promptEchoRunes) + `"`
	return mcp.NewToolResultImage(text, base64.StdEncoding.EncodeToString(data), ImageMIMEType), nil
}

// truncateRunes returns the first n runes of s.
func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s // at most n bytes, so at most n runes
	}
	count := 0
	for i := range s {
		if count == n {
			return s[:i]
		}
		count++
	}
	return s
}

// ---- rendering -------------------------------------------------------------

// pngEncoder is shared: png.Encoder is safe for concurrent use, and the pool
// lets concurrent calls reuse the encoder's internal buffers.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &encoderPool{}}

type encoderPool struct{ p sync.Pool }

func (e *encoderPool) Get() *png.EncoderBuffer {
	b, _ := e.p.Get().(*png.EncoderBuffer)
	return b
}

func (e *encoderPool) Put(b *png.EncoderBuffer) { e.p.Put(b) }

// renderPNG draws the picture for prompt and encodes it as PNG.
func renderPNG(prompt string) ([]byte, error) {
	img := render(prompt)
	var buf bytes.Buffer
	buf.Grow(64 << 10)
	if err := pngEncoder.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// seq is a deterministic stream of numbers drawn from the prompt's SHA-256
// (splitmix64 over the digest). Only integer arithmetic is used from here on,
// so an image is the same on every platform and Go version.
type seq struct{ state uint64 }

func newSeq(prompt string) *seq {
	sum := sha256.Sum256([]byte(prompt))
	s := binary.LittleEndian.Uint64(sum[0:]) ^
		binary.LittleEndian.Uint64(sum[8:])*0x9e3779b97f4a7c15 ^
		binary.LittleEndian.Uint64(sum[16:])*0xbf58476d1ce4e5b9 ^
		binary.LittleEndian.Uint64(sum[24:])*0x94d049bb133111eb
	return &seq{state: s}
}

func (s *seq) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// in returns a number in [lo, hi].
func (s *seq) in(lo, hi int) int {
	return lo + int(s.next()%uint64(hi-lo+1))
}

type wave struct{ fx, fy, phase, amp int }

type circle struct{ cx, cy, r, r2, step, bump int }

// render draws the picture: a cyclic 256-colour palette through four key
// colours (alternately bright and dark), indexed by a field that sums a linear
// gradient, two plane waves and a few circles, all seeded by the prompt.
func render(prompt string) *image.Paletted {
	s := newSeq(prompt)

	// Palette: four key colours at hues spread around the wheel, brightness
	// alternating so that bands are clearly visible.
	hue := s.in(0, 359)
	hueStep := s.in(50, 130)
	var keys [4]color.RGBA
	for i := range keys {
		v := s.in(200, 255)
		if i%2 == 1 {
			v = s.in(30, 110)
		}
		keys[i] = hsv(hue+i*hueStep, s.in(140, 255), v)
	}
	pal := make(color.Palette, 256)
	for i := range pal {
		a, b, t := keys[i>>6], keys[(i>>6+1)&3], i&63
		pal[i] = color.RGBA{
			R: lerp8(a.R, b.R, t),
			G: lerp8(a.G, b.G, t),
			B: lerp8(a.B, b.B, t),
			A: 0xff,
		}
	}

	base := s.in(0, 255)
	gx, gy := s.in(-384, 384), s.in(-384, 384)
	var waves [2]wave
	for i := range waves {
		waves[i] = wave{fx: s.in(-48, 48), fy: s.in(-48, 48), phase: s.in(0, 255), amp: s.in(24, 96)}
	}
	circles := make([]circle, s.in(3, 6))
	for i := range circles {
		r := s.in(16, 110)
		circles[i] = circle{
			cx: s.in(0, ImageSize-1), cy: s.in(0, ImageSize-1), r: r, r2: r * r,
			step: s.in(40, 100), bump: s.in(-128, 128),
		}
	}

	img := image.NewPaletted(image.Rect(0, 0, ImageSize, ImageSize), pal)

	// Palette indices wrap around (the palette is cyclic), so the layers are
	// simply added modulo 256.
	var waveTab [len(waves)][256]uint8
	for i, w := range waves {
		for t := range 256 {
			waveTab[i][t] = uint8(w.amp * psin(t) >> 7)
		}
	}
	for y := range ImageSize {
		row := img.Pix[y*img.Stride : y*img.Stride+ImageSize]
		g := base*256 + gy*y
		t0, t1 := waves[0].fy*y, waves[1].fy*y
		for x := range row {
			row[x] = uint8(g>>8) +
				waveTab[0][uint8((t0>>4)+waves[0].phase)] +
				waveTab[1][uint8((t1>>4)+waves[1].phase)]
			g += gx
			t0 += waves[0].fx
			t1 += waves[1].fx
		}
	}
	for _, c := range circles {
		r := c.r
		// bump*(r2-d2)/r2 without a division per pixel; fits in 32-bit ints.
		inv := (1 << 20) / c.r2
		for y := max(c.cy-r, 0); y <= min(c.cy+r, ImageSize-1); y++ {
			row := img.Pix[y*img.Stride : y*img.Stride+ImageSize]
			dy := y - c.cy
			for x := max(c.cx-r, 0); x <= min(c.cx+r, ImageSize-1); x++ {
				dx := x - c.cx
				if d2 := dx*dx + dy*dy; d2 < c.r2 {
					row[x] += uint8(c.step + (c.bump*(c.r2-d2)*inv)>>20)
				}
			}
		}
	}
	return img
}

// psin approximates 128*sin(2*pi*t/256) with two parabolas; integer only.
func psin(t int) int {
	t &= 255
	if t < 128 {
		return t * (128 - t) / 32
	}
	t -= 128
	return -t * (128 - t) / 32
}

func lerp8(a, b uint8, t int) uint8 {
	return uint8((int(a)*(64-t) + int(b)*t) / 64)
}

// hsv converts a hue in degrees and saturation and value in [0, 255] to RGB.
func hsv(h, s, v int) color.RGBA {
	h %= 360
	rem := (h % 60) * 255 / 60
	p := v * (255 - s) / 255
	q := v * (255 - s*rem/255) / 255
	t := v * (255 - s*(255-rem)/255) / 255
	var r, g, b int
	switch h / 60 {
	case 0:
		r, g, b = v, t, p
	case 1:
		r, g, b = q, v, p
	case 2:
		r, g, b = p, v, t
	case 3:
		r, g, b = p, q, v
	case 4:
		r, g, b = t, p, v
	default:
		r, g, b = v, p, q
	}
	return color.RGBA{R: uint8(r), G: uint8(g), B: uint8(b), A: 0xff}
}
