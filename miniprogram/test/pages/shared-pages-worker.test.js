'use strict'
require('./shared-pages')('worker')
