/*
 * dpmailctl_user.c: `dpmailctl user add|passwd|del|list`, editing the
 * user directory file ([auth] users_file) offline.
 *
 * Every change rewrites the whole file atomically (users_file_write:
 * temp file, fsync, rename) under an exclusive flock on "FILE.lock", so
 * two dpmailctl runs never lose each other's change and the daemon (which
 * re-reads the file when it changes) never sees half a file. Passwords
 * come from the terminal (asked twice, not echoed) or, with
 * --password-stdin, from the first line of stdin; never from argv,
 * where every user of the machine could read them in /proc.
 */
#include "mgmt/dpmailctl_user.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include "mgmt/config.h"
#include "store/users.h"

#ifndef DPMAIL_SYSCONFDIR
#define DPMAIL_SYSCONFDIR "etc"
#endif

static void user_usage(FILE *f)
{
	fprintf(f,
		"Usage: dpmailctl user add NAME [--password-stdin] "
		"[--senders LIST] [OPTS]\n"
		"       dpmailctl user passwd NAME [--password-stdin] [OPTS]\n"
		"       dpmailctl user del NAME [OPTS]\n"
		"       dpmailctl user list [OPTS]\n"
		"OPTS: --file USERS_FILE | -c CONF (default %s/dpmail.conf,\n"
		"      its [auth] users_file)\n"
		"The password is asked on the terminal, or read from the first\n"
		"line of stdin with --password-stdin; never given as an argument.\n"
		"--senders: the envelope senders the user may use besides its\n"
		"name (\"a@example.org,@example.net\").\n"
		"Exit codes: 0 done, 1 failed, 2 usage error.\n",
		DPMAIL_SYSCONFDIR);
}

static void wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (n--)
		*v++ = 0;
}

static int read_line_fd(FILE *f, char *buf, size_t cap)
{
	size_t n;

	if (fgets(buf, (int)cap, f) == NULL)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] != '\n' && !feof(f))
		return -2; /* too long */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

static int prompt(FILE *tty, const char *text, char *buf, size_t cap)
{
	struct termios old, quiet;
	int fd = fileno(tty), rc;

	fputs(text, stderr);
	fflush(stderr);
	if (tcgetattr(fd, &old) != 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	tcsetattr(fd, TCSAFLUSH, &quiet);
	rc = read_line_fd(tty, buf, cap);
	tcsetattr(fd, TCSAFLUSH, &old);
	fputc('\n', stderr);
	return rc;
}

/* The new password into pass (USERS_PASS_MAX + 2 bytes). 0 or 1. */
static int get_password(bool from_stdin, char *pass, size_t cap)
{
	char again[USERS_PASS_MAX + 2];
	FILE *tty;
	int rc;

	if (from_stdin) {
		rc = read_line_fd(stdin, pass, cap);
		if (rc != 0) {
			fprintf(stderr, "dpmailctl: %s\n", rc == -2 ?
				"password longer than 255 characters" :
				"no password on stdin");
			return 1;
		}
	} else {
		tty = fopen("/dev/tty", "r+");
		if (tty == NULL) {
			fprintf(stderr, "dpmailctl: no terminal to ask the "
				"password on; use --password-stdin\n");
			return 1;
		}
		rc = prompt(tty, "Password: ", pass, cap);
		if (rc == 0)
			rc = prompt(tty, "Again: ", again, sizeof(again));
		fclose(tty);
		if (rc != 0 || strcmp(pass, again) != 0) {
			wipe(again, sizeof(again));
			fprintf(stderr, "dpmailctl: %s\n", rc != 0 ?
				"no password read" : "the passwords differ");
			return 1;
		}
		wipe(again, sizeof(again));
	}
	if (pass[0] == '\0' || strlen(pass) > USERS_PASS_MAX) {
		fprintf(stderr, "dpmailctl: the password must have 1 to %d "
			"characters\n", USERS_PASS_MAX);
		return 1;
	}
	return 0;
}

static int users_path(const char *file, const char *conf_path, char *out,
		      size_t cap)
{
	static struct dpmail_conf conf;
	char err[1024];

	if (file != NULL) {
		snprintf(out, cap, "%s", file);
		return 0;
	}
	if (conf_path == NULL)
		conf_path = DPMAIL_SYSCONFDIR "/dpmail.conf";
	if (config_load(&conf, conf_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (conf.smtpd.auth.users_file[0] == '\0') {
		fprintf(stderr, "dpmailctl: %s has no [auth] users_file "
			"(or give --file)\n", conf_path);
		return 1;
	}
	snprintf(out, cap, "%s", conf.smtpd.auth.users_file);
	return 0;
}

int dpmailctl_user(int argc, char **argv)
{
	const char *verb, *name = NULL, *file = NULL, *conf = NULL;
	const char *senders = NULL;
	bool pw_stdin = false;
	char path[4096], lock[4200], err[256];
	char pass[USERS_PASS_MAX + 2];
	struct users_entry *v = NULL;
	size_t n = 0, at;
	int lfd, rc = 1;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		user_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	verb = argv[1];
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--password-stdin") == 0) {
			pw_stdin = true;
		} else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else if ((strcmp(argv[i], "--config") == 0 ||
			    strcmp(argv[i], "-c") == 0) && i + 1 < argc) {
			conf = argv[++i];
		} else if (strcmp(argv[i], "--senders") == 0 && i + 1 < argc) {
			senders = argv[++i];
		} else if (argv[i][0] != '-' && name == NULL) {
			name = argv[i];
		} else {
			user_usage(stderr);
			return 2;
		}
	}
	if (strcmp(verb, "list") != 0 && strcmp(verb, "add") != 0 &&
	    strcmp(verb, "passwd") != 0 && strcmp(verb, "del") != 0) {
		user_usage(stderr);
		return 2;
	}
	if ((strcmp(verb, "list") == 0) != (name == NULL)) {
		user_usage(stderr);
		return 2;
	}
	if (name != NULL && !users_name_valid(name)) {
		fprintf(stderr, "dpmailctl: '%s' is not a valid user name (1-255 "
			"printable characters, no ':' or space)\n", name);
		return 2;
	}
	if (senders != NULL && (strlen(senders) > USERS_ADDRS_MAX ||
				strpbrk(senders, ": \t\r\n") != NULL)) {
		fprintf(stderr, "dpmailctl: --senders: a comma-separated "
			"list of addresses without spaces\n");
		return 2;
	}
	if (users_path(file, conf, path, sizeof(path)) != 0)
		return 1;
	snprintf(lock, sizeof(lock), "%s.lock", path);
	lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
		fprintf(stderr, "dpmailctl: %s: %s\n", lock, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return 1;
	}
	if (users_file_read(path, &v, &n, err, sizeof(err)) != 0) {
		fprintf(stderr, "dpmailctl: %s:%s\n", path, err);
		goto out;
	}
	if (strcmp(verb, "list") == 0) {
		for (size_t i = 0; i < n; i++)
			printf("%s%s%s\n", v[i].name, v[i].addrs[0] ? "\t" : "",
			       v[i].addrs);
		rc = 0;
		goto out;
	}
	for (at = 0; at < n && strcmp(v[at].name, name) != 0; at++)
		;
	if (strcmp(verb, "add") == 0 && at < n) {
		fprintf(stderr, "dpmailctl: user %s exists (use passwd)\n", name);
		goto out;
	}
	if (strcmp(verb, "add") != 0 && at == n) {
		fprintf(stderr, "dpmailctl: no user %s in %s\n", name, path);
		goto out;
	}
	if (strcmp(verb, "del") == 0) {
		memmove(&v[at], &v[at + 1], (n - at - 1) * sizeof(*v));
		n--;
	} else {
		if (at == n) {
			struct users_entry *t = realloc(v, (n + 1) * sizeof(*v));
			if (t == NULL)
				goto out;
			v = t;
			memset(&v[n], 0, sizeof(*v));
			snprintf(v[n].name, sizeof(v[n].name), "%s", name);
			n++;
		}
		if (senders != NULL)
			snprintf(v[at].addrs, sizeof(v[at].addrs), "%s", senders);
		if (get_password(pw_stdin, pass, sizeof(pass)) != 0)
			goto out;
		if (users_hash(pass, v[at].hash, sizeof(v[at].hash)) != 0) {
			fprintf(stderr, "dpmailctl: hashing failed\n");
			goto out;
		}
	}
	if ((rc = users_file_write(path, v, n)) != 0) {
		fprintf(stderr, "dpmailctl: %s: %s\n", path, strerror(-rc));
		rc = 1;
		goto out;
	}
	printf("%s: user %s %s\n", path, name, strcmp(verb, "add") == 0 ?
	       "added" : strcmp(verb, "del") == 0 ? "deleted" :
	       "password changed");
	rc = 0;
out:
	wipe(pass, sizeof(pass));
	free(v);
	close(lfd);
	return rc;
}
