/* tern/tern.h - the umbrella header: everything a program using libtern needs. */
#ifndef TERN_TERN_H
#define TERN_TERN_H

#define TERN_VERSION "0.1.0"

#include "backend.h"
#include "chat.h"
#include "checked.h"
#include "gguf.h"
#include "graph.h"
#include "install.h"
#include "io.h"
#include "model.h"
#include "op.h"
#include "quant.h"
#include "sampler.h"
#include "session.h"
#include "status.h"
#include "tensor.h"
#include "threadpool.h"
#include "tokenizer.h"

#endif
