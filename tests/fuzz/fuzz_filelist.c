/* fuzz_filelist.c: libFuzzer target for PaddleSeg file-list parsing (blanks and a custom
 * separator). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "moonseg.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/ms_fuzz_list_%ld.txt", (long)getpid());
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  /* The first byte picks the separator mode and whether labels are required. */
  const char *seps[] = {NULL, "", " ", ",", "::"};
  int pick = size ? data[0] % 5 : 0;
  ms_dataset *ds = NULL;
  if (ms_dataset_new(&ds) != MS_OK) return 0;
  if (ms_dataset_add_list(ds, "/tmp", path, seps[pick], size > 1 && (data[1] & 1)) == MS_OK) {
    for (int64_t i = 0; i < ms_dataset_size(ds); i++) {
      (void)ms_dataset_image(ds, i);
      (void)ms_dataset_label(ds, i);
      (void)ms_dataset_origin(ds, i);
    }
  }
  ms_dataset_free(ds);
  return 0;
}
