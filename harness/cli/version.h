/* version.h -- the git revision this binary was built from ("unknown" outside a git checkout; "-dirty"
 * when the working tree had uncommitted changes). */
#ifndef CONCORD_VERSION_H
#define CONCORD_VERSION_H
const char *concord_git_rev(void);
#endif
