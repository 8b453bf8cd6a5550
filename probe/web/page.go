package web

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"mailconf/probe/report"
)

// The page runs one inline script, allowed by a per-response nonce; the
// script talks only to this origin.
const cspFormat = "default-src 'none'; script-src 'nonce-%s'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// pageData is what probe.html renders.
type pageData struct {
	Nonce   string
	API     string
	Action  string
	Address string // as typed, shown again in the form
	Error   *apiError
	R       *reportView
}

// columns of the endpoint matrix and the step names (probe/check) that
// fill them.
var columns = []struct{ name, title string }{
	{"connect", "Connect"}, {"tls", "TLS"}, {"certificate", "Certificate"}, {"greeting", "Greeting"},
	{"starttls", "STARTTLS"}, {"capability", "Capabilities"}, {"mechanisms", "Mechanisms"},
	{"auth", "Login"}, {"session", "Session"},
}

var columnOf = map[string]string{"capability_tls": "capability", "auth_before_tls": "mechanisms", "starttls_injection": "starttls"}

type reportView struct {
	Rep          *report.Report
	FirstFailure *report.Step
	Columns      []string
	Rows         []matrixRow
	Tree         []*stepNode
	Ticket       string
}

type matrixRow struct {
	Protocol, Endpoint, IP string
	Status                 report.Status
	Cells                  []cell
}

type cell struct {
	Status report.Status
	MS     int64
	Title  string
	Detail string
}

type stepNode struct {
	report.Step
	Children []*stepNode
}

func newReportView(rep *report.Report) *reportView {
	v := &reportView{Rep: rep}
	byID := map[string]report.Step{}
	for _, s := range rep.Steps {
		byID[s.ID] = s
	}
	if s, ok := byID[rep.Summary.FirstFailure]; ok {
		v.FirstFailure = &s
	}
	for _, c := range columns {
		v.Columns = append(v.Columns, c.title)
	}
	for _, ep := range rep.Endpoints {
		for _, ip := range ep.IPs {
			row := matrixRow{
				Protocol: strings.ToUpper(ep.Protocol),
				Endpoint: ep.Host + ":" + strconv.Itoa(ep.Port) + " " + ep.Security,
				IP:       ip.IP, Status: ip.Status, Cells: make([]cell, len(columns)),
			}
			for _, id := range ip.Steps {
				s, ok := byID[id]
				if !ok {
					continue
				}
				name := id[strings.LastIndexByte(id, '.')+1:]
				if c, ok := columnOf[name]; ok {
					name = c
				}
				for i, c := range columns {
					if c.name != name {
						continue
					}
					cur := &row.Cells[i]
					if cur.Status == "" || worse(s.Status, cur.Status) {
						*cur = cell{Status: s.Status, Title: s.Title, Detail: stepDetail(s)}
					}
					cur.MS += s.DurationMS
				}
			}
			v.Rows = append(v.Rows, row)
		}
	}
	nodes := map[string]*stepNode{}
	for _, s := range rep.Steps {
		nodes[s.ID] = &stepNode{Step: s}
	}
	for _, s := range rep.Steps {
		n := nodes[s.ID]
		if p, ok := nodes[s.Parent]; ok && s.Parent != "" {
			p.Children = append(p.Children, n)
		} else {
			v.Tree = append(v.Tree, n)
		}
	}
	var b bytes.Buffer
	_ = report.Text(&b, rep, false)
	v.Ticket = b.String()
	return v
}

func stepDetail(s report.Step) string {
	switch {
	case s.Error != nil:
		return string(s.Error.Class) + ": " + s.Error.Message
	case s.SkipReason != "":
		return s.SkipReason
	}
	return s.Detail
}

var severity = map[report.Status]int{report.StatusSkipped: 1, report.StatusInfo: 1, report.StatusPass: 2, report.StatusWarn: 3, report.StatusError: 4, report.StatusFail: 5}

func worse(a, b report.Status) bool { return severity[a] > severity[b] }

// icons are the status marks of the page (the words are there too, for
// screen readers and copy-paste).
var icons = map[report.Status]string{
	report.StatusPass: "✓", report.StatusWarn: "!", report.StatusFail: "✗", report.StatusError: "?",
	report.StatusSkipped: "–", report.StatusInfo: "i", report.StatusRunning: "…", report.StatusPending: "…",
}

var funcs = template.FuncMap{
	"icon":  func(s report.Status) string { return icons[s] },
	"upper": strings.ToUpper,
	"overallWords": func(o report.Overall) string {
		return map[report.Overall]string{
			report.OverallOK: "everything works", report.OverallWarnings: "works, with warnings",
			report.OverallDegraded: "works, but some paths fail", report.OverallBroken: "broken",
			report.OverallInconclusive: "inconclusive (the probe could not finish)",
		}[o]
	},
}

func (h *Handler) newPage(address string) (*pageData, error) {
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, err
	}
	return &pageData{Nonce: base64.RawURLEncoding.EncodeToString(n[:]), API: PathAPI, Action: PathPage, Address: address}, nil
}

func (h *Handler) render(c echo.Context, status int, d *pageData) error {
	var b bytes.Buffer
	if err := h.page.ExecuteTemplate(&b, "base", d); err != nil {
		h.log.Error("probe page: render", "err", err)
		return c.String(http.StatusInternalServerError, "the page could not be rendered\n")
	}
	hd := c.Response().Header()
	hd.Set("Content-Security-Policy", strings.Replace(cspFormat, "%s", d.Nonce, 1))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	return c.HTMLBlob(status, b.Bytes())
}

// handlePage answers GET /probe: the form. An address in the query only
// fills the form in; a probe runs only from a POST.
func (h *Handler) handlePage(c echo.Context) error {
	addr := c.QueryParam("address")
	if len(addr) > 320 {
		addr = ""
	}
	d, err := h.newPage(addr)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, d)
}

// handlePageRun answers the form's POST /probe without JavaScript: the
// probe runs to the end and the page shows the final report.
func (h *Handler) handlePageRun(c echo.Context) error {
	in, aerr := h.readInput(c)
	typed := ""
	if f := c.Request().PostForm; f != nil {
		typed = f.Get("address")
		if len(typed) > 320 {
			typed = ""
		}
	}
	d, err := h.newPage(typed)
	if err != nil {
		return err
	}
	if aerr == nil {
		var release func()
		if release, aerr = h.acquire(); aerr == nil {
			var rep *report.Report
			rep, aerr = h.run(c.Request().Context(), in, nil)
			release()
			if aerr == nil {
				d.R = newReportView(rep)
				return h.render(c, http.StatusOK, d)
			}
		}
	}
	h.log.Info("probe refused", "caller", callerKey(c.Request().RemoteAddr), "status", aerr.Status, "reason", aerr.Message)
	d.Error = aerr
	return h.render(c, aerr.Status, d)
}
