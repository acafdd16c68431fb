// Command tlogcheck is the independent verifier of the dock's transparency log in the tests: Go's
// golang.org/x/mod/sumdb/{note,tlog} check what agent/note.py and agent/tlog.py wrote.
//
// It reads one JSON request on stdin and prints one line per check, "<what> OK" or "<what> FAIL: <error>",
// exiting 1 when any check failed:
//
//	{"vkey": "<name>+<hash>+<key>", "checkpoint": "<file>", "origin": "<origin>", "tiles": "<dir>",
//	 "all_tiles": true, "entries": true,
//	 "records": [{"index": 5, "leaf": "<b64 leaf hash>" | "entry": "<b64 entry>", "proof": ["<b64>", ...]}],
//	 "trees": [{"size": 3, "root": "<b64>", "proof": ["<b64>", ...]}],
//	 "cosigners": ["<name>+<hash>+<base64(0x04 || key)>", ...]}
//
// Go's note package knows only Ed25519 note keys (type 0x01); each cosigner is checked through a
// note.Verifier of our own for C2SP tlog-cosignature cosignature/v1 (type 0x04), which note.Open accepts
// like any other verifier: the checkpoint must carry a valid cosignature by every cosigner listed.
//
// Tiles are read from "<dir>/tile/<L>/<N>[.p/<W>]" and "<dir>/tile/entries/<N>[.p/<W>]" (C2SP
// tlog-tiles paths, which omit the height that Go's own tile paths carry). A record without "proof" is
// proved by Go from the tiles (tlog.ProveRecord) before tlog.CheckRecord.
//
// With "bundle": "<file>" (and no "checkpoint"), the file is a proof bundle (C2SP tlog-proof with our
// extra data, docs/formats.md §14): its checkpoint is opened as above, with "vkey" and any "cosigners"
// (each of which must have cosigned it), then tlog.CheckRecord checks the log entry at "index"
// under the checkpoint, the recording under the entry's recordings_root and each custody line under
// its custody_root: lines "bundle log", "bundle recording", "bundle custody <seq>".
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type record struct {
	Index int64    `json:"index"`
	Leaf  string   `json:"leaf"`
	Entry *string  `json:"entry"`
	Proof []string `json:"proof"`
}

type tree struct {
	Size  int64    `json:"size"`
	Root  string   `json:"root"`
	Proof []string `json:"proof"`
}

type request struct {
	Vkey       string   `json:"vkey"`
	Checkpoint string   `json:"checkpoint"`
	Origin     string   `json:"origin"`
	Tiles      string   `json:"tiles"`
	AllTiles   bool     `json:"all_tiles"`
	Entries    bool     `json:"entries"`
	Records    []record `json:"records"`
	Trees      []tree   `json:"trees"`
	Cosigners  []string `json:"cosigners"`
	Bundle     string   `json:"bundle"`
}

// cosigner verifies C2SP cosignature/v1 signatures: 8-byte big-endian timestamp || Ed25519 signature
// over "cosignature/v1\ntime <T>\n" || the checkpoint text.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (c cosigner) Name() string    { return c.name }
func (c cosigner) KeyHash() uint32 { return c.hash }
func (c cosigner) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t >= 1<<63 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(c.key, signed, sig[8:])
}

func newCosigner(vkey string) (cosigner, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return cosigner{}, errors.New("malformed cosigner vkey")
	}
	h, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil || len(parts[1]) != 8 {
		return cosigner{}, errors.New("malformed cosigner key hash")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return cosigner{}, errors.New("not a cosignature/v1 Ed25519 key (type 0x04)")
	}
	sum := sha256.Sum256(append([]byte(parts[0]+"\n"), raw...))
	if binary.BigEndian.Uint32(sum[:4]) != uint32(h) {
		return cosigner{}, errors.New("cosigner key hash does not match its key")
	}
	return cosigner{parts[0], uint32(h), ed25519.PublicKey(raw[1:])}, nil
}

type leafProof struct {
	Index *int64   `json:"index"`
	Line  string   `json:"line"`
	Proof []string `json:"proof"`
}

type extraData struct {
	Format    string      `json:"format"`
	Entry     string      `json:"entry"`
	Recording leafProof   `json:"recording"`
	Custody   []leafProof `json:"custody"`
}

type logEntry struct {
	Recordings      int64  `json:"recordings"`
	RecordingsRoot  string `json:"recordings_root"`
	CustodyFirstSeq int64  `json:"custody_first_seq"`
	CustodyLastSeq  int64  `json:"custody_last_seq"`
	CustodyRoot     string `json:"custody_root"`
}

const height = 8

type fileTiles struct{ dir string }

func encodeIndex(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

func tilePath(t tlog.Tile) string {
	p := ""
	if t.W != 1<<height {
		p = fmt.Sprintf(".p/%d", t.W)
	}
	l := strconv.Itoa(t.L)
	if t.L == -1 {
		l = "entries"
	}
	return fmt.Sprintf("tile/%s/%s%s", l, encodeIndex(t.N), p)
}

func (f fileTiles) Height() int { return height }

func (f fileTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(tilePath(t))))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s is %d bytes, want %d", tilePath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (f fileTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func hash(b64 string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(b) != tlog.HashSize {
		return h, errors.New("not a base64 32-byte hash")
	}
	copy(h[:], b)
	return h, nil
}

func hashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		h, err := hash(s)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// openCheckpoint verifies the note with the one verifier key and parses the three checkpoint lines.
func openCheckpoint(req request, msg []byte) (tlog.Tree, error) {
	v, err := note.NewVerifier(req.Vkey)
	if err != nil {
		return tlog.Tree{}, err
	}
	verifiers := []note.Verifier{v}
	for _, vkey := range req.Cosigners {
		c, err := newCosigner(vkey)
		if err != nil {
			return tlog.Tree{}, err
		}
		verifiers = append(verifiers, c)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		return tlog.Tree{}, err
	}
	for _, c := range verifiers[1:] {
		found := false
		for _, sig := range n.Sigs {
			found = found || (sig.Name == c.Name() && sig.Hash == c.KeyHash())
		}
		if !found {
			return tlog.Tree{}, fmt.Errorf("no valid cosignature by %s", c.Name())
		}
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return tlog.Tree{}, errors.New("checkpoint is not three lines")
	}
	if req.Origin != "" && lines[0] != req.Origin {
		return tlog.Tree{}, fmt.Errorf("origin %q, want %q", lines[0], req.Origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return tlog.Tree{}, errors.New("bad tree size")
	}
	h, err := hash(lines[2])
	if err != nil {
		return tlog.Tree{}, err
	}
	return tlog.Tree{N: size, Hash: h}, nil
}

// checkEntries reads every entry bundle and checks each entry's record hash against the
// authenticated level-0 tile hash.
func checkEntries(t tlog.Tree, f fileTiles, r tlog.HashReader) error {
	for n := int64(0); n*(1<<height) < t.N; n++ {
		w := t.N - n*(1<<height)
		if w > 1<<height {
			w = 1 << height
		}
		tile := tlog.Tile{H: height, L: -1, N: n, W: int(w)}
		data, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(tilePath(tile))))
		if err != nil {
			return err
		}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, n*(1<<height)+int64(i))
		}
		want, err := r.ReadHashes(indexes)
		if err != nil {
			return err
		}
		for i := int64(0); i < w; i++ {
			if len(data) < 2 {
				return fmt.Errorf("%s: truncated", tilePath(tile))
			}
			size := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+size {
				return fmt.Errorf("%s: truncated", tilePath(tile))
			}
			entry := data[2 : 2+size]
			data = data[2+size:]
			if tlog.RecordHash(entry) != want[i] {
				return fmt.Errorf("entry %d does not match its leaf hash", n*(1<<height)+i)
			}
		}
		if len(data) != 0 {
			return fmt.Errorf("%s: trailing bytes", tilePath(tile))
		}
	}
	return nil
}

func report(failed *bool, what string, err error) {
	if err != nil {
		*failed = true
		fmt.Printf("%s FAIL: %v\n", what, err)
		return
	}
	fmt.Printf("%s OK\n", what)
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Printf("request FAIL: %v\n", err)
		os.Exit(2)
	}
	failed := false
	var msg []byte
	var err error
	var b proofBundle
	if req.Bundle != "" {
		b, err = readBundle(req.Bundle)
		msg = b.checkpoint
	} else {
		msg, err = os.ReadFile(req.Checkpoint)
	}
	var t tlog.Tree
	if err == nil {
		t, err = openCheckpoint(req, msg)
	}
	report(&failed, "checkpoint", err)
	if err != nil {
		os.Exit(1)
	}
	if req.Bundle != "" {
		checkBundle(&failed, t, b)
	}
	f := fileTiles{req.Tiles}
	r := tlog.TileHashReader(t, f)
	if req.AllTiles {
		indexes := make([]int64, t.N)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, int64(i))
		}
		_, err := r.ReadHashes(indexes)
		if err == nil {
			var th tlog.Hash
			th, err = tlog.TreeHash(t.N, r)
			if err == nil && th != t.Hash {
				err = errors.New("tree hash from tiles differs from the checkpoint")
			}
		}
		report(&failed, "tiles", err)
	}
	if req.Entries {
		report(&failed, "entries", checkEntries(t, f, r))
	}
	for _, rec := range req.Records {
		what := fmt.Sprintf("record %d", rec.Index)
		var leaf tlog.Hash
		var err error
		if rec.Entry != nil {
			var data []byte
			data, err = base64.StdEncoding.Strict().DecodeString(*rec.Entry)
			leaf = tlog.RecordHash(data)
		} else {
			leaf, err = hash(rec.Leaf)
		}
		var proof []tlog.Hash
		if err == nil && rec.Proof == nil {
			var p tlog.RecordProof
			p, err = tlog.ProveRecord(t.N, rec.Index, r)
			proof = p
		} else if err == nil {
			proof, err = hashes(rec.Proof)
		}
		if err == nil {
			err = tlog.CheckRecord(proof, t.N, t.Hash, rec.Index, leaf)
		}
		report(&failed, what, err)
	}
	for _, tr := range req.Trees {
		what := fmt.Sprintf("tree %d", tr.Size)
		old, err := hash(tr.Root)
		var proof []tlog.Hash
		if err == nil {
			proof, err = hashes(tr.Proof)
		}
		if err == nil {
			err = tlog.CheckTree(proof, t.N, t.Hash, tr.Size, old)
		}
		report(&failed, what, err)
	}
	if failed {
		os.Exit(1)
	}
}

type proofBundle struct {
	index      int64
	proof      []tlog.Hash
	extra      extraData
	checkpoint []byte
}

// readBundle splits a C2SP tlog-proof: header, extra, index, proof hashes, a blank line, the checkpoint.
func readBundle(path string) (proofBundle, error) {
	var b proofBundle
	data, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	head, checkpoint, ok := strings.Cut(string(data), "\n\n")
	if !ok {
		return b, errors.New("no blank line before the checkpoint")
	}
	b.checkpoint = []byte(checkpoint)
	lines := strings.Split(head, "\n")
	if len(lines) < 3 || lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "extra ") ||
		!strings.HasPrefix(lines[2], "index ") {
		return b, errors.New("not a c2sp.org/tlog-proof@v1 with extra data")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(lines[1], "extra "))
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(raw, &b.extra); err != nil {
		return b, err
	}
	if b.index, err = strconv.ParseInt(strings.TrimPrefix(lines[2], "index "), 10, 64); err != nil {
		return b, err
	}
	b.proof, err = hashes(lines[3:])
	return b, err
}

func hexHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != tlog.HashSize {
		return h, errors.New("not a hex 32-byte hash")
	}
	copy(h[:], raw)
	return h, nil
}

// checkBundle: the log entry under the checkpoint, the recording and each custody line under the roots
// the entry commits to, all with tlog.CheckRecord (RFC 6962 trees, as the log's).
func checkBundle(failed *bool, t tlog.Tree, b proofBundle) {
	report(failed, "bundle log", tlog.CheckRecord(b.proof, t.N, t.Hash, b.index, tlog.RecordHash([]byte(b.extra.Entry))))
	var e logEntry
	err := json.Unmarshal([]byte(b.extra.Entry), &e)
	var recRoot, custodyRoot tlog.Hash
	if err == nil {
		recRoot, err = hexHash(e.RecordingsRoot)
	}
	if err == nil {
		custodyRoot, err = hexHash(e.CustodyRoot)
	}
	if err == nil && b.extra.Recording.Index == nil {
		err = errors.New("the recording has no index")
	}
	var proof []tlog.Hash
	if err == nil {
		proof, err = hashes(b.extra.Recording.Proof)
	}
	if err == nil {
		leaf := tlog.RecordHash([]byte(b.extra.Recording.Line))
		err = tlog.CheckRecord(proof, e.Recordings, recRoot, *b.extra.Recording.Index, leaf)
	}
	report(failed, "bundle recording", err)
	for _, c := range b.extra.Custody {
		var entry struct {
			Seq int64 `json:"seq"`
		}
		err := json.Unmarshal([]byte(c.Line), &entry)
		var proof []tlog.Hash
		if err == nil {
			proof, err = hashes(c.Proof)
		}
		if err == nil {
			size := e.CustodyLastSeq - e.CustodyFirstSeq + 1
			err = tlog.CheckRecord(proof, size, custodyRoot, entry.Seq-e.CustodyFirstSeq, tlog.RecordHash([]byte(c.Line)))
		}
		report(failed, fmt.Sprintf("bundle custody %d", entry.Seq), err)
	}
}
