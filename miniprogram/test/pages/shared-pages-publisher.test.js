'use strict'
require('./shared-pages')('publisher')
