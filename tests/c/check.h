/* check.h: the CHECK macro of the C unit tests: counts checks and failures, names the last error.
 */
#ifndef MS_TEST_CHECK_H
#define MS_TEST_CHECK_H
#include <stdio.h>

#include "moonseg.h"

static int failures, checks;
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond,     \
              ms_last_error());                                                                    \
    }                                                                                              \
  } while (0)

#endif
