/*
 * Test-only C function for the end-to-end suite: fork a setsid() grandchild
 * of the calling backend (what an untrusted PL or a C function could do)
 * that outlives a crash-restart and keeps dumping the small shared mappings
 * it inherited (where pg_ephcrypt's key page lives) to a file. Never
 * installed anywhere: the test loads it by absolute path.
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fmgr.h"
#include "utils/builtins.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(ephcrypt_test_fork_watcher);

static void
dump_mappings(const char *out_path)
{
	char		tmp[1024];
	char		line[512];
	FILE	   *maps;
	FILE	   *out;

	snprintf(tmp, sizeof(tmp), "%s.tmp", out_path);
	maps = fopen("/proc/self/maps", "r");
	out = fopen(tmp, "w");
	if (maps == NULL || out == NULL)
		_exit(2);
	fprintf(out, "pid %d\n", (int) getpid());
	while (fgets(line, sizeof(line), maps))
	{
		unsigned long start,
					end;
		char		perms[8];

		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) != 3)
			continue;
		/* One-page shared mappings: the key page and the counter page. */
		if (end - start != 4096 || perms[0] != 'r' || perms[3] != 's')
			continue;
		fprintf(out, "%lx ", start);
		for (int i = 0; i < 64; i++)
			fprintf(out, "%02x", ((unsigned char *) start)[i]);
		fprintf(out, "\n");
	}
	fclose(maps);
	fclose(out);
	rename(tmp, out_path);
}

Datum
ephcrypt_test_fork_watcher(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			seconds = PG_GETARG_INT32(1);
	pid_t		child = fork();

	if (child < 0)
		elog(ERROR, "fork failed");
	if (child == 0)
	{
		pid_t		grandchild;

		setsid();
		grandchild = fork();
		if (grandchild != 0)
			_exit(0);
		signal(SIGQUIT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		for (int i = 0; i < seconds * 10; i++)
		{
			dump_mappings(path);
			usleep(100000);
		}
		_exit(0);
	}
	waitpid(child, NULL, 0);
	PG_RETURN_INT32(0);
}
