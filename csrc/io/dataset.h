/* dataset.h: the sample list behind ms_dataset (shared with the loader). */
#ifndef MS_DATASET_H
#define MS_DATASET_H
#include <stdint.h>

typedef struct {
  char *image, *label, *origin; /* origin: "train_list.txt:12" for error messages */
} ms_sample;

struct ms_dataset {
  ms_sample *samples;
  int64_t n, cap, with_labels;
};

#endif
