#!/bin/sh
/ve/bin/sh /ve/report.sh dracut
