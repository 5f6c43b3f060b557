/* png.h -- write 8-bit PNG files (for dataset export and for attack image grids).
 * Not for: reading (datasets/formats.h has the validated decoder; use dataset_open("png:DIR") for sets).
 */
#ifndef CONCORD_PNG_H
#define CONCORD_PNG_H

/* pix: (h, w, channels) row-major interleaved bytes; channels 1 (grey), 2 (grey+alpha), 3 (RGB) or
 * 4 (RGBA). Writes tmp_path(path) and renames it into place (file_commit), so a failure never leaves
 * a half-written `path`. Returns 0, or -1 with err_set("<path>: <problem>; <fix>"). */
int png_write(const char *path, const unsigned char *pix, int w, int h, int channels);

/* Same, but writes `path` directly with no temp file and no fsync: for files inside a temporary
 * directory that is itself renamed into place when complete (dataset export). */
int png_write_direct(const char *path, const unsigned char *pix, int w, int h, int channels);

#endif
