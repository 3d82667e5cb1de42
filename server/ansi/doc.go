// Package ansi turns the lines of a step's log, with the terminal escape
// sequences programs print to colour them, into HTML that is safe to put
// in a page: every byte of the log is escaped first, and only the spans
// this package makes carry markup. The first 16 colours are classes for
// the page's style sheet to draw (f0–f15 for the text, g0–g15 for the
// background; b, d, i, u and s for bold, faint, italic, underline and
// strike); the others are hex digits in data-fg and data-bg attributes,
// for the page's script to apply, since a strict Content-Security-Policy
// ignores inline styles.
//
// Only SGR (Select Graphic Rendition: colours, bold, italic, underline,
// inverse, strike) is rendered; every other escape sequence (cursor
// movement, erasing, window titles, hyperlinks) is dropped. Text after a
// carriage return replaces the text before it on the line, as a progress
// bar redraws itself, and the style carries on.
package ansi
