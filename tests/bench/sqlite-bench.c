/*
 * The SQLite side of `scripts/bench store`: the same workloads as tests/images/store-bench,
 * on SQLite in WAL mode with synchronous=FULL (every commit synced), in a Linux guest.
 *
 *   sqlite-bench DB SECONDS SEQ_MIB
 *
 * Prints `store-bench: sqlite <row> ops=N bytes=B ns=T` per row, like the lichen image.
 * Built statically against Debian's libsqlite3.a by scripts/bench.d/store.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static sqlite3 *db;
static sqlite3_stmt *put;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void check(int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite-bench: %s: %s\n", what, sqlite3_errmsg(db));
        exit(2);
    }
}

static void exec(const char *sql) {
    check(sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

static void insert(const char *key, const void *value, int len) {
    check(sqlite3_bind_text(put, 1, key, -1, SQLITE_TRANSIENT), "bind key");
    check(sqlite3_bind_blob(put, 2, value, len, SQLITE_STATIC), "bind value");
    check(sqlite3_step(put), "insert");
    check(sqlite3_reset(put), "reset");
}

static void report(const char *row, uint64_t ops, uint64_t bytes, uint64_t ns) {
    printf("store-bench: sqlite %s ops=%llu bytes=%llu ns=%llu\n", row, (unsigned long long)ops,
           (unsigned long long)bytes, (unsigned long long)ns);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: sqlite-bench DB SECONDS SEQ_MIB\n");
        return 1;
    }
    uint64_t budget = strtoull(argv[2], NULL, 10) * 1000000000u;
    uint64_t seq_mib = strtoull(argv[3], NULL, 10);
    check(sqlite3_open(argv[1], &db), "open");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB)");
    check(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv VALUES (?, ?)", -1, &put, NULL),
          "prepare");
    char key[32];

    static uint8_t small[64];
    memset(small, 0xa5, sizeof small);
    uint64_t start = now_ns(), ops = 0;
    while (now_ns() - start < budget) {
        exec("BEGIN");
        snprintf(key, sizeof key, "k%llu", (unsigned long long)(ops % 256));
        insert(key, small, sizeof small);
        exec("COMMIT");
        ops++;
    }
    report("commit_64b", ops, ops * 64, now_ns() - start);

    static uint8_t page[4096];
    memset(page, 0x3c, sizeof page);
    start = now_ns(), ops = 0;
    while (now_ns() - start < budget) {
        exec("BEGIN");
        for (int j = 0; j < 10; j++) {
            snprintf(key, sizeof key, "b%llu", (unsigned long long)((ops * 10 + j) % 1000));
            insert(key, page, sizeof page);
        }
        exec("COMMIT");
        ops++;
    }
    report("commit_10x4k", ops, ops * 40960, now_ns() - start);

    uint8_t *big = malloc(1 << 20);
    start = now_ns();
    for (uint64_t i = 0; i < seq_mib; i++) {
        memset(big, (int)i, 1 << 20);
        exec("BEGIN");
        snprintf(key, sizeof key, "s%llu", (unsigned long long)i);
        insert(key, big, 1 << 20);
        exec("COMMIT");
    }
    report("seq_1m", seq_mib, seq_mib << 20, now_ns() - start);
    sqlite3_finalize(put);
    check(sqlite3_close(db), "close");
    return 0;
}
