/* tern/tern.h - the umbrella header: everything a program using libtern needs. */
#ifndef TERN_TERN_H
#define TERN_TERN_H

#define TERN_VERSION "0.1.0"

#include "backend.h"
#include "checked.h"
#include "op.h"
#include "quant.h"
#include "status.h"
#include "tensor.h"

#endif
