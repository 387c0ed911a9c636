/* SPDX-License-Identifier: MIT */
/*
 * The ncurses screen.  Lines from the top: three header lines, a status line
 * (the view, its sort column and filter, "paused", or why the arena cannot be
 * shown, and the keys on its right), the view's column titles, its rows, and
 * at the bottom a footer naming the views.  Every view fits 80 columns; rows that do not
 * fit the height scroll with the arrow and page keys.
 *
 * The loop samples every delay (unless paused) and otherwise waits in getch
 * with a timeout, so keys are answered at once.  SIGINT and SIGTERM end it
 * like 'q', restoring the terminal; a resize redraws.
 */
#include <curses.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "top.h"

#define HEADER_ROWS 5 /* three header lines, the status line, the titles */

static const char status_keys[] = "s:sort /:filter p:pause h:help q:quit";

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct tui {
	struct top_source *src;
	const struct top_options *opt;
	struct top_snapshot snap[2];
	int cur;
	enum top_view view;
	size_t sort[VIEW_COUNT];
	char filter[VIEW_COUNT][TOP_CELL_MAX];
	size_t scroll[VIEW_COUNT];
	bool paused, help;
};

static const char *const view_titles[VIEW_COUNT] = { "Shards", "Endpoints", "Clusters", "Peers",
						     "Keys" };

static void sample(struct tui *t)
{
	t->src->keys_wanted = t->view == VIEW_KEYS;
	top_sample(t->src, &t->snap[t->cur], &t->snap[!t->cur]);
	t->cur = !t->cur;
}

static void line_at(int y, const char *s, int attr)
{
	if (y < 0 || y >= LINES)
		return;
	move(y, 0);
	clrtoeol();
	attron(attr);
	mvaddnstr(y, 0, s, COLS);
	attroff(attr);
}

static void draw_footer(const struct tui *t)
{
	static const char keys[] = " Tab:next view";
	int x = 0, y = LINES - 1;
	char item[32];

	move(y, 0);
	clrtoeol();
	for (int v = 0; v < VIEW_COUNT && x < COLS; v++) {
		int n = snprintf(item, sizeof(item), "%d:%s", v + 1, view_titles[v]);

		if (v == (int)t->view)
			attron(A_REVERSE);
		mvaddnstr(y, x, item, COLS - x);
		if (v == (int)t->view)
			attroff(A_REVERSE);
		x += n + 1;
	}
	if (x < COLS)
		mvaddnstr(y, x, keys, COLS - x);
}

static void draw_help(void)
{
	static const char *const lines[] = {
		"shmgroup-top keys",
		"",
		"  Tab, 1-5    next view; Shards, Endpoints, Clusters, Peers, Keys",
		"  s           sort by the next column",
		"  /           filter rows (Enter applies, empty clears, Esc cancels)",
		"  p           pause or resume refreshing",
		"  Up, Down,",
		"  PgUp, PgDn  scroll",
		"  h, ?        this help",
		"  q           quit",
		"",
		"any key closes this help",
	};
	int n = (int)(sizeof(lines) / sizeof(lines[0]));

	for (int i = 0; i < n && HEADER_ROWS + i < LINES - 1; i++)
		line_at(HEADER_ROWS + i, lines[i], i == 0 ? A_BOLD : A_NORMAL);
	for (int y = HEADER_ROWS + n; y < LINES - 1; y++) {
		move(y, 0);
		clrtoeol();
	}
}

static void draw(struct tui *t)
{
	const struct top_snapshot *s = &t->snap[t->cur];
	char l1[256], l2[256], l3[256], status[256], line[512];
	struct top_table tab;
	int rows = LINES - HEADER_ROWS - 1;

	erase();
	top_header_lines(s, t->src->group, l1, l2, l3, sizeof(l1));
	line_at(0, l1, A_BOLD);
	line_at(1, l2, A_NORMAL);
	line_at(2, l3, A_NORMAL);
	draw_footer(t);
	if (t->help) {
		draw_help();
		refresh();
		return;
	}
	if (!s->attached) {
		line_at(3, "arena not attached; trying again every refresh", A_BOLD);
		refresh();
		return;
	}
	top_table_build(&tab, t->view, s, false);
	top_table_filter(&tab, t->filter[t->view]);
	top_table_sort(&tab, t->sort[t->view]);
	snprintf(status, sizeof(status), "%s: %zu  sort %s%s%s%s", view_titles[t->view], tab.n_rows,
		 t->sort[t->view] < tab.n_cols ? tab.cols[t->sort[t->view]].title : "-",
		 t->filter[t->view][0] ? "  filter " : "", t->filter[t->view],
		 t->paused ? "  [paused]" : "");
	line_at(3, status, A_NORMAL);
	/* The keys, on the right of the status line when there is room. */
	if ((int)(strlen(status) + sizeof(status_keys)) < COLS)
		mvaddstr(3, COLS - (int)sizeof(status_keys) + 1, status_keys);
	top_table_header(&tab, line, sizeof(line));
	line_at(4, line, A_REVERSE);
	if (rows > 0 && t->scroll[t->view] + (size_t)rows > tab.n_rows)
		t->scroll[t->view] = tab.n_rows > (size_t)rows ? tab.n_rows - (size_t)rows : 0;
	for (int i = 0; i < rows && t->scroll[t->view] + (size_t)i < tab.n_rows; i++) {
		top_table_row(&tab, t->scroll[t->view] + (size_t)i, line, sizeof(line));
		line_at(HEADER_ROWS + i, line, A_NORMAL);
	}
	if (tab.n_rows == 0 && rows > 0)
		line_at(HEADER_ROWS, tab.empty ? tab.empty : "(none)", A_NORMAL);
	top_table_free(&tab);
	refresh();
}

/* Reads a filter on the status line.  Enter applies it, Esc keeps the old. */
static void read_filter(struct tui *t)
{
	char buf[TOP_CELL_MAX] = "";
	size_t n = 0;

	timeout(-1);
	curs_set(1);
	for (;;) {
		int ch;

		line_at(3, "filter: ", A_BOLD);
		mvaddnstr(3, 8, buf, COLS - 8);
		refresh();
		ch = getch();
		if (ch == '\n' || ch == KEY_ENTER || ch == '\r') {
			memcpy(t->filter[t->view], buf, n + 1);
			t->scroll[t->view] = 0;
			break;
		}
		if (ch == 27 || stop_requested)
			break;
		if ((ch == KEY_BACKSPACE || ch == 127 || ch == 8) && n > 0)
			buf[--n] = '\0';
		else if (ch >= 0x20 && ch < 0x7f && n + 1 < sizeof(buf)) {
			buf[n++] = (char)ch;
			buf[n] = '\0';
		}
	}
	curs_set(0);
}

static void set_view(struct tui *t, enum top_view v)
{
	t->view = v;
	/* The Keys view walks the entries, which other views skip. */
	if (v == VIEW_KEYS && !t->snap[t->cur].prefixes_walked && !t->paused)
		sample(t);
}

/* Answers a key; false to quit. */
static bool on_key(struct tui *t, int ch)
{
	if (t->help) {
		t->help = false;
		return ch != 'q';
	}
	switch (ch) {
	case 'q':
		return false;
	case 'h':
	case '?':
		t->help = true;
		break;
	case '\t':
		set_view(t, (enum top_view)((t->view + 1) % VIEW_COUNT));
		break;
	case KEY_BTAB:
		set_view(t, (enum top_view)((t->view + VIEW_COUNT - 1) % VIEW_COUNT));
		break;
	case '1':
	case '2':
	case '3':
	case '4':
	case '5':
		set_view(t, (enum top_view)(ch - '1'));
		break;
	case 's':
		t->sort[t->view] = (t->sort[t->view] + 1) % top_view_ncols(t->view);
		break;
	case '/':
		read_filter(t);
		break;
	case 'p':
		t->paused = !t->paused;
		break;
	case KEY_DOWN:
		t->scroll[t->view]++;
		break;
	case KEY_UP:
		if (t->scroll[t->view])
			t->scroll[t->view]--;
		break;
	case KEY_NPAGE:
		t->scroll[t->view] +=
			(size_t)(LINES > HEADER_ROWS + 2 ? LINES - HEADER_ROWS - 2 : 1);
		break;
	case KEY_PPAGE: {
		size_t page = (size_t)(LINES > HEADER_ROWS + 2 ? LINES - HEADER_ROWS - 2 : 1);

		t->scroll[t->view] = t->scroll[t->view] > page ? t->scroll[t->view] - page : 0;
		break;
	}
	default:
		break;
	}
	return true;
}

int top_tui(struct top_source *src, const struct top_options *o)
{
	struct tui t = { .src = src, .opt = o, .view = o->view };
	struct sigaction sa = { .sa_handler = on_stop };
	uint64_t next;

	for (int v = 0; v < VIEW_COUNT; v++)
		t.sort[v] = top_view_default_sort((enum top_view)v);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!initscr()) {
		fprintf(stderr, "shmgroup-top: cannot start the terminal screen\n");
		return 2;
	}
	cbreak();
	noecho();
	keypad(stdscr, TRUE);
	curs_set(0);
	set_escdelay(25);
	sample(&t);
	next = top_mono_ns() + (uint64_t)o->delay_ms * 1000000u;
	draw(&t);
	while (!stop_requested) {
		uint64_t now = top_mono_ns();
		int ch;

		if (now >= next) {
			if (!t.paused)
				sample(&t);
			next = now + (uint64_t)o->delay_ms * 1000000u;
			draw(&t);
			continue;
		}
		timeout((int)((next - now) / 1000000u) + 1);
		ch = getch();
		if (ch == ERR)
			continue;
		if (!on_key(&t, ch))
			break;
		draw(&t);
	}
	endwin();
	top_snapshot_free(&t.snap[0]);
	top_snapshot_free(&t.snap[1]);
	return 0;
}
