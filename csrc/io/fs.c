/* fs.c: directory operations for checkpoints and outputs (mkdir -p, rm -r, listing, durable
 * rename). */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/internal.h"
#include "moonseg.h"

int ms_fs_mkdirs(const char *path) {
  if (!path || !*path) return ms_fail(MS_ERR_INVALID, "mkdirs: empty path");
  size_t n = strlen(path);
  char *p = malloc(n + 1);
  if (!p) return ms_fail(MS_ERR_OOM, "mkdirs %s: out of memory", path);
  memcpy(p, path, n + 1);
  /* Create each prefix in turn; an existing directory is fine, anything else is named. */
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != 0) continue;
    char c = p[i];
    p[i] = 0;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      int e = errno;
      int rc = ms_fail(MS_ERR_IO, "cannot create directory %s: %s", p, strerror(e));
      free(p);
      return rc;
    }
    p[i] = c;
  }
  free(p);
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return ms_fail(MS_ERR_IO, "cannot create directory %s: a file of that name is in the way",
                   path);
  return MS_OK;
}

static int remove_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p) != 0 && errno != ENOENT ? -1 : 0;
}

int ms_fs_remove_tree(const char *path) {
  if (!path || !*path) return ms_fail(MS_ERR_INVALID, "remove_tree: empty path");
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return MS_OK; /* already gone */
    return ms_fail(MS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
  }
  /* Depth first, never following symbolic links out of the tree. */
  if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return ms_fail(MS_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
  return MS_OK;
}

int ms_fs_list(const char *path, char *buf, int64_t cap, int64_t *needed) {
  if (!path || !needed || cap < 0 || (cap > 0 && !buf))
    return ms_fail(MS_ERR_INVALID, "list_dir: bad arguments");
  DIR *d = opendir(path);
  if (!d) return ms_fail(MS_ERR_IO, "cannot list directory %s: %s", path, strerror(errno));
  int64_t len = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    int64_t k = (int64_t)strlen(e->d_name);
    if (len + k + 1 <= cap) {
      memcpy(buf + len, e->d_name, (size_t)k);
      buf[len + k] = '\n';
    }
    len += k + 1;
  }
  closedir(d);
  *needed = len;
  return MS_OK;
}

int ms_fs_rename(const char *from, const char *to) {
  if (!from || !to) return ms_fail(MS_ERR_INVALID, "rename: bad arguments");
  if (rename(from, to) != 0)
    return ms_fail(MS_ERR_IO, "cannot rename %s to %s: %s", from, to, strerror(errno));
  /* Make the rename durable: fsync the directory that holds the new name. */
  char *dup = strdup(to);
  if (dup) {
    int dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
    free(dup);
  }
  return MS_OK;
}
